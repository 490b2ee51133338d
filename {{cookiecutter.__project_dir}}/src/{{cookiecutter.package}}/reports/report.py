"""``report DATA_DIR [RUN_DIR] --out DIR``: the notebooks' figures as PNG files, and the duplicate
images (``duplicates.csv``; ``duplicate_conflicts.png`` if some disagree on labels), all made
before the first file is written; and ``summary_table``, the text table ``cv`` and ``tune`` log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..cli.argtypes import command_parser
from ..prep.duplicates import DUPLICATE_DISTANCE, near_duplicate_groups
from ..utils.atomic import write_csv
from ..utils.constraints import DuplicateDistance, check_range
from ..utils.errors import DataError
from ..labels import Sample, read_train_csv
from ..layout import TRAIN_CSV, TRAIN_IMAGES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DATA_FIGURES = ("label_counts", "label_cooccurrence", "label_sets", "sample_images", "image_sizes")
RUN_FIGURES = ("training_curves", "per_class_f1", "f1_vs_threshold")
DUPLICATES_CSV, CONFLICTS_FIGURE = "duplicates.csv", "duplicate_conflicts"


def summary_table(rows: Sequence[Sequence[object]]) -> str:
    """Rows of cells (the first one the header) as an aligned text table, for a command's log."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def run_figures(run_dir: str | Path, data_dir: str | Path) -> dict[str, Figure]:
    """The figures of a fit or cv run folder trained on ``data_dir`` (see ``RUN_FIGURES``)."""
    from . import plots
    from .run_logs import load_predictions, metric_logs

    logs = metric_logs(run_dir)  # first: its errors name a missing or log-less run folder
    predictions = load_predictions(run_dir, data_dir)
    return {
        "training_curves": plots.training_curves(logs),
        "per_class_f1": plots.per_class_f1_figure(predictions),
        "f1_vs_threshold": plots.f1_threshold_figure(predictions),
    }


def duplicate_rows(
    samples: Sequence[Sample], groups: Sequence[Sequence[str]]
) -> list[tuple[int, str, str, bool]]:
    """``(group, image, labels, conflict)`` for each image of each duplicate group (numbered
    from 1); ``conflict``: the group's images do not all carry the same labels."""
    labels = {sample.image: " ".join(sample.labels) for sample in samples}
    rows = []
    for number, group in enumerate(groups, start=1):
        conflict = len({labels[name] for name in group}) > 1
        rows += [(number, name, labels[name], conflict) for name in group]
    return rows


def write_report(
    data_dir: str | Path,
    run_dir: str | Path | None,
    out: str | Path,
    duplicate_distance: int = DUPLICATE_DISTANCE,
) -> list[Path]:
    """Draw every figure (``DATA_FIGURES``, ``RUN_FIGURES`` with a run, ``CONFLICTS_FIGURE`` if
    duplicates disagree) and find the duplicates (``prep.duplicates``, ``duplicate_distance``),
    then write each figure as ``out/<name>.png`` and ``out/duplicates.csv``; returns the files
    written."""
    from . import plots

    folder = Path(data_dir)
    check_range("--duplicate-distance", duplicate_distance, DuplicateDistance)
    if Path(out).exists() and not Path(out).is_dir():
        raise DataError(f"--out {out}: is a file, not a folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found (expected {TRAIN_CSV} in it)")
    samples = read_train_csv(folder / TRAIN_CSV)
    figures = {
        "label_counts": plots.label_counts(samples),
        "label_cooccurrence": plots.label_cooccurrence(samples),
        "label_sets": plots.label_set_counts(samples),
        "sample_images": plots.image_grid(folder, samples),
        "image_sizes": plots.image_sizes(folder, samples),
    }
    if run_dir is not None:
        figures.update(run_figures(run_dir, data_dir))
    images = [sample.image for sample in samples]
    groups = near_duplicate_groups(folder / TRAIN_IMAGES, images, duplicate_distance)
    rows = duplicate_rows(samples, groups)
    by_name = {sample.image: sample for sample in samples}
    conflicting = sorted({row[0] for row in rows if row[3]})
    if conflicting:
        shown = [[by_name[name] for name in groups[number - 1]] for number in conflicting]
        figures[CONFLICTS_FIGURE] = plots.conflicting_duplicates(folder, shown)
    written = [plots.save_figure(fig, Path(out) / f"{name}.png") for name, fig in figures.items()]
    header = ["group", "image", "labels", "conflict"]
    return [*written, write_csv(Path(out) / DUPLICATES_CSV, header, rows)]


def run_command(argv: Sequence[str]) -> int:
    """``report DATA_DIR [RUN_DIR] --out DIR``: the command line of ``write_report``."""
    parser = command_parser(
        "report",
        "Write the figures of a data folder (and of a fit or cv run folder trained on it) as"
        " PNG files: the same figures as notebooks/01-explore.ipynb and 02-results.ipynb; and"
        f" its duplicate images, identical or near ({DUPLICATES_CSV}), to review their labels.",
    )
    parser.add_argument("data_dir", type=Path, help="a Kaggle-layout folder (train.csv, ...)")
    run_help = "a fit run folder (checkpoints/, logs/; e.g. runs/demo) or a cv --out folder"
    parser.add_argument("run_dir", type=Path, nargs="?", help=run_help)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="default reports/")
    parser.add_argument(
        "--duplicate-distance",
        type=int,
        default=DUPLICATE_DISTANCE,
        help="images whose perceptual hashes differ in at most this many of 64 bits are"
        f" duplicates (0 to 16; default {DUPLICATE_DISTANCE}: fit's data.duplicate_distance);"
        f" written to {DUPLICATES_CSV} with their labels, the conflicting groups drawn in"
        f" {CONFLICTS_FIGURE}.png",
    )
    args = parser.parse_args(list(argv))
    paths = write_report(args.data_dir, args.run_dir, args.out, args.duplicate_distance)
    for path in paths:
        print(path)
    return 0
