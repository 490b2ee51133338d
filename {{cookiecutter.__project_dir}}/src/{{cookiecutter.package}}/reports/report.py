"""``report DATA_DIR [RUN_DIR] --out DIR``: the notebooks' figures as PNG files (all drawn before
the first is written); and ``summary_table``, the text table ``cv`` and ``tune`` log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..cli.argtypes import command_parser
from ..utils.errors import DataError
from ..labels import read_train_csv
from ..layout import TRAIN_CSV

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DATA_FIGURES = ("label_counts", "label_cooccurrence", "label_sets", "sample_images", "image_sizes")
RUN_FIGURES = ("training_curves", "per_class_f1", "f1_vs_threshold")


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


def write_report(data_dir: str | Path, run_dir: str | Path | None, out: str | Path) -> list[Path]:
    """Draw every figure (``DATA_FIGURES``, and ``RUN_FIGURES`` with a run), then write each as
    ``out/<name>.png``; returns the files written."""
    from . import plots

    folder = Path(data_dir)
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
    return [plots.save_figure(fig, Path(out) / f"{name}.png") for name, fig in figures.items()]


def run_command(argv: Sequence[str]) -> int:
    """``report DATA_DIR [RUN_DIR] --out DIR``: the command line of ``write_report``."""
    parser = command_parser(
        "report",
        "Write the figures of a data folder (and of a fit or cv run folder trained on it) as"
        " PNG files: the same figures as notebooks/01-explore.ipynb and 02-results.ipynb.",
    )
    parser.add_argument("data_dir", type=Path, help="a Kaggle-layout folder (train.csv, ...)")
    run_help = "a fit run folder (checkpoints/, logs/; e.g. runs/demo) or a cv --out folder"
    parser.add_argument("run_dir", type=Path, nargs="?", help=run_help)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="default reports/")
    args = parser.parse_args(list(argv))
    for path in write_report(args.data_dir, args.run_dir, args.out):
        print(path)
    return 0
