"""The competition metric is one definition: swap it in ``metrics.py`` and every consumer follows.

The ``swapped_metric`` fixture (``conftest.py``) replaces samples-F1 with Hamming loss, under
another name and the other direction (lower is better).
"""

import contextlib
import io
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from helpers import QUICK_EPOCH, cli_args, fit, hamming_loss, logged, read_csv_rows
from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.labels import encode_labels, read_train_csv
from {{ cookiecutter.package }}.metrics import decode
from {{ cookiecutter.package }}.reports.plots import THRESHOLDS
from {{ cookiecutter.package }}.reports.report import run_figures
from {{ cookiecutter.package }}.reports.run_logs import load_predictions
from {{ cookiecutter.package }}.thresholds import DEFAULT_GRID, ThresholdReport, choose_thresholds
from {{ cookiecutter.package }}.workflows.fit_jobs import config_only_cli
from {{ cookiecutter.package }}.workflows.tune import PruningCallback

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
CLASSES = ["healthy", "rust", "scab", "spot"]


def noisy_oof(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """OOF-like probabilities on which the best thresholds for F1 and Hamming loss differ."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, len(CLASSES))) < [0.5, 0.3, 0.15, 0.08]).astype(np.int64)
    positive, negative = rng.uniform(0.1, 1.0, targets.shape), rng.uniform(0.0, 0.7, targets.shape)
    return np.where(targets == 1, positive, negative), targets


def assert_best_of_grid(report: ThresholdReport, probs: np.ndarray, targets: np.ndarray) -> None:
    """The report's global threshold is the one of the grid (and the default) of least loss."""
    grid = np.append(DEFAULT_GRID, report.default_threshold)
    losses = [hamming_loss(targets, decode(probs, t)) for t in grid]
    assert report.global_score == pytest.approx(min(losses), abs=1e-12)
    assert hamming_loss(targets, decode(probs, report.global_threshold)) == min(losses)


def test_the_checkpoint_monitor_and_the_tune_objective_follow(swapped_metric, sample_dir):
    checkpoint = config_only_cli(cli_args(sample_dir)).config.fit.checkpoint
    assert (checkpoint.monitor, checkpoint.mode) == ("val/hamming", "min")
    assert PruningCallback(trial=None).monitor == "val/hamming"  # type: ignore[arg-type]
    optuna = pytest.importorskip("optuna", reason="tune needs the [tune] extra")
    from {{ cookiecutter.package }}.workflows.tune_study import open_study

    study = open_study("swap", None, optuna.pruners.NopPruner())
    assert study.direction == optuna.study.StudyDirection.MINIMIZE


def test_tuned_thresholds_minimise_the_swapped_metric(swapped_metric, tmp_path):
    probs, targets = noisy_oof()
    report = choose_thresholds(probs, targets, 0.5, CLASSES, min_positives=0, shrinkage=0)
    assert_best_of_grid(report, probs, targets)
    f1 = [f1_score(targets, decode(probs, t), average="samples") for t in DEFAULT_GRID]
    assert DEFAULT_GRID[int(np.argmax(f1))] < report.global_threshold - 0.3  # metrics disagree
    tuned = np.array(report.per_class_thresholds)
    assert report.per_class_score == pytest.approx(hamming_loss(targets, decode(probs, tuned)))
    for c in range(len(CLASSES)):  # no single class's threshold can lower the loss on the grid
        for t in DEFAULT_GRID:
            moved = np.where(np.arange(len(CLASSES)) == c, t, tuned)
            assert hamming_loss(targets, decode(probs, moved)) >= report.per_class_score - 1e-12
    written = report.save(tmp_path / "thresholds.json").read_text()
    assert '"metric": "hamming"' in written and '"hamming": ' in written
    assert '"f1"' not in written


@pytest.mark.slow
def test_fit_logs_monitors_and_draws_the_swapped_metric(swapped_metric, sample_dir, in_tmp):
    assert fit(sample_dir) == 0
    (loss,) = logged(in_tmp / "logs", "val/hamming")
    assert logged(in_tmp / "logs", "val/f1") == []
    assert len(logged(in_tmp / "logs", "val/f1_healthy")) == 1  # per-class F1 is still logged
    callbacks = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    (key,) = [key for key in callbacks if key.startswith("EpochCheckpoint")]
    assert "'monitor': 'val/hamming'" in key and "'mode': 'min'" in key
    assert callbacks[key]["best_model_score"].item() == pytest.approx(loss)

    figures = run_figures(in_tmp, sample_dir)
    (curves,) = [a for a in figures["training_curves"].axes if a.get_ylabel() == "val/hamming"]
    assert [line.get_label() for line in curves.lines] == ["val/hamming"]
    (bars,) = figures["per_class_f1"].axes[0].get_legend().get_texts()
    assert "(hamming " in bars.get_text()
    lines = figures["f1_vs_threshold"].axes[0].lines
    (overall,) = [line for line in lines if line.get_label() == "hamming"]
    held_out = load_predictions(in_tmp, sample_dir)
    expected = [hamming_loss(held_out.targets, decode(held_out.probs, t)) for t in THRESHOLDS]
    assert overall.get_ydata().tolist() == pytest.approx(expected)

    printed = run_notebook_code("02-results.ipynb", in_tmp, sample_dir)
    assert f"last val/hamming {loss}" in printed
    at_run_threshold = hamming_loss(held_out.targets, decode(held_out.probs, held_out.threshold))
    assert f": hamming {at_run_threshold:.4f} at threshold" in printed


@pytest.mark.slow
def test_cv_scores_and_tunes_with_the_swapped_metric(swapped_metric, sample_dir, in_tmp):
    flags = cli_args(sample_dir, *QUICK_EPOCH, "--data.image_size", "32")
    assert main(["cv", "--folds", "2", "--out", "cv", *flags]) == 0
    summary = json.loads((in_tmp / "cv" / "cv.json").read_text())
    report = ThresholdReport.load(in_tmp / "cv" / "thresholds.json")
    assert summary["metric"] == report.metric == "hamming"
    oof = read_csv_rows(in_tmp / "cv" / "oof.csv")
    probs = np.array([[float(row[c]) for c in summary["classes"]] for row in oof])
    folds = np.array([int(row["fold"]) for row in oof])
    labels = {sample.image: sample for sample in read_train_csv(sample_dir / "train.csv")}
    targets = encode_labels([labels[row["image"]] for row in oof], summary["classes"])
    default, tuned = summary["default_threshold"], report.thresholds_for_predict()
    at_default = hamming_loss(targets, decode(probs, default))
    assert summary["oof_hamming_default_threshold"] == pytest.approx(at_default)
    at_tuned = hamming_loss(targets, decode(probs, tuned))
    assert summary["oof_hamming_tuned"] == pytest.approx(at_tuned)
    assert summary["fold_oof_hamming"] == pytest.approx(
        [hamming_loss(targets[folds == k], decode(probs[folds == k], default)) for k in range(2)]
    )
    assert_best_of_grid(report, probs, targets)


def run_notebook_code(name: str, run_dir: Path, data_dir: Path) -> str:
    """Run the code cells of a notebook in this process (so the swap applies); what it printed."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    code = "\n".join(line for cell in cells for line in cell.splitlines() if line[:1] != "%")
    printed = io.StringIO()
    environment = {"RUN_DIR": os.fspath(run_dir), "DATA_DIR": os.fspath(data_dir)}
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        for variable, value in environment.items():
            patch.setenv(variable, value)
        exec(compile(code, name, "exec"), {})
    return printed.getvalue()
