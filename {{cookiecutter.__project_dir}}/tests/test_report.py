"""The figures (``plots``), their readers (``run_logs``) and the ``report`` command."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from {{ cookiecutter.package }}.reports import plots
from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.utils.errors import DataError
from {{ cookiecutter.package }}.workflows.cv_files import FOLDS_CSV, OOF, PLAN, THRESHOLDS
from {{ cookiecutter.package }}.labels import encode_labels, label_vocabulary, read_train_csv
from {{ cookiecutter.package }}.reports.report import DATA_FIGURES, RUN_FIGURES
from {{ cookiecutter.package }}.reports.run_logs import load_predictions, metric_logs
from {{ cookiecutter.package }}.thresholds import choose_thresholds

from helpers import only_error_line
from figure_checks import assert_drawn
from forged_images import jpeg_claiming
from full_disk import fill_disk


def _pngs(folder: Path) -> dict[str, tuple[int, int]]:
    """``stem -> (width, height)`` of every PNG in ``folder``, each checked to decode and to
    show its data (not a blank figure)."""
    sizes = {}
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            image.load()
            assert image.format == "PNG"
            assert_drawn(image, path.name)
            sizes[path.stem] = image.size
    return sizes


def _metrics_csv(path: Path, epochs: int) -> Path:
    """A CSVLogger-like ``metrics.csv``: loss rows and validation rows on separate lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "step", "train/loss_epoch", "val/f1", "val/loss"])
        for epoch in range(epochs):
            writer.writerow([epoch, 10 * epoch + 9, "", 0.3 + 0.1 * epoch, 0.7 - 0.1 * epoch])
            writer.writerow([epoch, 10 * epoch + 9, 0.8 - 0.1 * epoch, "", ""])
    return path


def _fake_cv_folder(sample_dir: Path, out: Path) -> Path:
    """The files ``report`` reads from a cv folder, with seeded random OOF probabilities."""
    samples = read_train_csv(sample_dir / "train.csv")
    classes = label_vocabulary(samples)
    targets = encode_labels(samples, classes).astype(np.int64)
    rng = np.random.default_rng(0)
    probs = np.clip(0.6 * targets + 0.5 * rng.random(targets.shape), 0.0, 1.0)
    out.mkdir()
    (out / FOLDS_CSV).write_text(
        "image,fold\n" + "".join(f"{s.image},{i % 2}\n" for i, s in enumerate(samples))
    )
    (out / PLAN).write_text(json.dumps({"folds": 2}))
    with (out / OOF).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "fold", *classes])
        for index, (sample, row) in enumerate(zip(samples, probs)):
            writer.writerow([sample.image, index % 2, *row.round(6)])
    choose_thresholds(probs, targets, 0.4, classes).save(out / THRESHOLDS)
    for fold in range(2):
        _metrics_csv(
            out / f"fold{fold}" / "logs" / "lightning_logs" / "version_0" / "metrics.csv", 3
        )
    return out


def test_report_writes_the_data_figures(sample_dir, in_tmp):
    assert main(["report", str(sample_dir), "--out", "figures"]) == 0
    sizes = _pngs(in_tmp / "figures")
    assert sorted(sizes) == sorted(DATA_FIGURES)
    assert all(width >= 300 and height >= 150 for width, height in sizes.values())


@pytest.mark.slow
def test_report_of_a_cv_folder_uses_the_pooled_oof_and_every_fold_log(sample_dir, in_tmp):
    cv = _fake_cv_folder(sample_dir, in_tmp / "cv")
    predictions = load_predictions(cv, sample_dir)
    assert predictions.probs.shape == predictions.targets.shape == (160, 6)
    assert predictions.tuned_threshold is not None
    assert [log.name for log in metric_logs(cv)] == [
        "fold0/logs/lightning_logs/version_0",
        "fold1/logs/lightning_logs/version_0",
    ]
    epochs, f1 = metric_logs(cv)[0].series("val/f1")
    assert epochs.tolist() == [0, 1, 2] and f1.tolist() == pytest.approx([0.3, 0.4, 0.5])
    assert main(["report", str(sample_dir), str(cv), "--out", "figures"]) == 0
    assert sorted(_pngs(in_tmp / "figures")) == sorted(DATA_FIGURES + RUN_FIGURES)


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("no data folder", "data folder not found"),
        ("no run folder", "run folder not found"),
        ("run without logs", "no metrics.csv in it"),
        ("bad metrics.csv", "row 2: val/f1='nan%' is not a number"),
        ("oof of another data set", "is not in"),
        ("out is a file", "--out figures: is a file, not a folder"),
    ],
)
def test_report_refuses_bad_input_in_one_line_and_writes_nothing(
    sample_dir, in_tmp, capsys, problem, expected
):
    data, run = str(sample_dir), in_tmp / "run"
    if problem == "no data folder":
        data = str(in_tmp / "missing")
    elif problem == "run without logs":
        run.mkdir()
    elif problem == "bad metrics.csv":
        path = run / "logs" / "metrics.csv"
        path.parent.mkdir(parents=True)
        path.write_text("epoch,step,val/f1\n0,3,nan%\n")
    elif problem == "oof of another data set":
        run = _fake_cv_folder(sample_dir, run)
        oof = (run / OOF).read_text().replace("train_0000.jpg", "elsewhere.jpg")
        (run / OOF).write_text(oof)
    elif problem == "out is a file":
        run = _fake_cv_folder(sample_dir, run)
        (in_tmp / "figures").write_text("mine")
    assert main(["report", data, str(run), "--out", "figures"]) == 2
    assert expected in only_error_line(capsys)
    if problem == "out is a file":
        assert (in_tmp / "figures").read_text() == "mine"
    else:
        assert not (in_tmp / "figures").exists()


# A decompression bomb Pillow itself refuses, and one just over the pixels training accepts.
BOMBS = [(60_000, 60_000), (8_100, 8_000)]


def _plant_bomb(data_copy: Path, width: int, height: int) -> str:
    """Turn the last training image of ``data_copy`` into a small file declaring a huge image."""
    name = read_train_csv(data_copy / "train.csv")[-1].image
    jpeg_claiming(data_copy / "train_images" / name, width, height)
    return name


@pytest.mark.parametrize("width, height", BOMBS)
def test_report_refuses_a_decompression_bomb_in_one_line(data_copy, in_tmp, capsys, width, height):
    name = _plant_bomb(data_copy, width, height)
    assert main(["report", str(data_copy), "--out", "figures"]) == 2
    line = only_error_line(capsys)
    assert f"train_images/{name}: " in line and re.search("more than|exceeds limit", line)
    assert not (in_tmp / "figures").exists()


@pytest.mark.parametrize("width, height", BOMBS)
def test_the_explore_notebooks_image_sizes_refuses_a_bomb_naming_it(data_copy, width, height):
    name = _plant_bomb(data_copy, width, height)
    samples = read_train_csv(data_copy / "train.csv")
    with pytest.raises(DataError, match=f"train_images/{name}: "):
        plots.image_sizes(data_copy, samples)  # the notebook's cell


def test_a_full_disk_is_one_line_naming_the_figure_and_leaves_no_partial_file(
    sample_dir, in_tmp, capsys, monkeypatch
):
    fill_disk(monkeypatch, in_tmp / "figures")
    assert main(["report", str(sample_dir), "--out", "figures"]) == 2
    line = only_error_line(capsys)
    assert "figures/label_counts.png: cannot write it, the disk is full" in line
    assert list((in_tmp / "figures").iterdir()) == []


@pytest.mark.slow
def test_report_of_a_fit_run_predicts_its_validation_fold(sample_dir, trained, in_tmp):
    run = trained.parent.parent
    predictions = load_predictions(run, sample_dir)
    assert predictions.probs.shape == predictions.targets.shape
    assert 0 < len(predictions.targets) < 160 and predictions.tuned_threshold is None
    assert main(["report", str(sample_dir), str(run), "--out", "figures"]) == 0
    assert sorted(_pngs(in_tmp / "figures")) == sorted(DATA_FIGURES + RUN_FIGURES)


def test_the_readme_figures_are_committed_small_and_made_by_make_figures():
    root = Path(__file__).parents[1]
    shown = re.findall(
        r"!\[[^\]]*\]\((docs/figures/[^)]+\.png)\)", (root / "README.md").read_text()
    )
    assert len(shown) == 2
    recipe = (root / "Makefile").read_text().split("\nfigures:", 1)[1]
    for link in shown:
        path = root / link
        assert path.stat().st_size < 80_000, link
        assert path.stem in DATA_FIGURES + RUN_FIGURES and path.name in recipe
        with Image.open(path) as image:
            assert image.format == "PNG"
