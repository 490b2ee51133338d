"""Which threshold ``predict`` decodes at: flag > cv folder's thresholds.json > checkpoint > config.

Each test saves a copy of the session checkpoint with a threshold the flag or the folder must
beat, predicts through the command line with the probabilities written too, and checks the log
line that names the rule used and that every row's labels are the decode of its probabilities at
the expected threshold.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.metrics import decode
from {{ cookiecutter.package }}.predict.threshold_report import THRESHOLD_PRECEDENCE, ThresholdReport

from helpers import cli_args, read_csv_rows

FLAG, CV_FOLDER, CHECKPOINT, CONFIG = THRESHOLD_PRECEDENCE
CONFIG_THRESHOLD = 0.4  # what configs/baseline.yaml sets
SLOW = pytest.mark.slow


def _checkpoint(trained: Path, target: Path, threshold: float | None) -> Path:
    """A copy of ``trained`` saved with ``threshold`` (``None``: without the hyper-parameter)."""
    state = torch.load(trained, weights_only=True)
    if threshold is None:
        del state["hyper_parameters"]["threshold"]
    else:
        state["hyper_parameters"]["threshold"] = threshold
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return target


def _cv_folder(trained: Path, folder: Path, checkpoint: float, tuned: float) -> Path:
    """A two-fold cv folder of copies of ``trained`` whose thresholds.json says ``tuned``."""
    for fold in range(2):
        _checkpoint(trained, folder / f"fold{fold}" / "best.ckpt", checkpoint)
    (folder / "folds.csv").write_text("image,fold\n", encoding="utf-8")
    (folder / "plan.json").write_text(json.dumps({"folds": 2}), encoding="utf-8")
    classes = torch.load(trained, weights_only=True)["hyper_parameters"]["classes"]
    n = len(classes)
    report = ThresholdReport(classes, 0.4, 0.5, tuned, 0.6, [tuned] * n, 0.6, "global", 10, [1] * n)
    report.save(folder / "thresholds.json")
    return folder


def _predict(sample_dir: Path, source: Path, capsys, *flags: str, config: bool = True) -> str:
    """Predict from ``source`` into ``out/``; the log line naming the threshold."""
    args = ["--ckpt_path", str(source), "--submission.path", "out/sub.csv"]
    args += ["--submission.probabilities_path", "out/probs.csv", *flags]
    if config:
        args = cli_args(sample_dir, *args)
    else:
        args = ["--data.data_dir", str(sample_dir), "--data.image_size", "64"]
        args += ["--data.num_workers", "0", "--trainer.accelerator", "cpu", *flags]
        args += ["--ckpt_path", str(source), "--submission.path", "out/sub.csv"]
        args += ["--submission.probabilities_path", "out/probs.csv"]
    assert main(["predict", *args]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "decision threshold" in line]
    assert len(lines) == 1
    return lines[0]


def _assert_decoded_at(folder: Path, threshold: float) -> None:
    rows = read_csv_rows(folder / "out" / "sub.csv")
    probs = read_csv_rows(folder / "out" / "probs.csv")
    classes = [name for name in probs[0] if name != "image"]
    matrix = np.array([[float(row[name]) for name in classes] for row in probs])
    expected = [
        " ".join(name for name, on in zip(classes, hot) if on) for hot in decode(matrix, threshold)
    ]
    assert [row["labels"] for row in rows] == expected


@pytest.mark.parametrize("flag", ["0.5", pytest.param("0.49", marks=SLOW)])
def test_the_flag_beats_the_checkpoint_even_at_the_default_value(
    sample_dir, in_tmp, trained, capsys, flag
):
    source = _checkpoint(trained, in_tmp.parent / "zero.ckpt", 0.0)
    line = _predict(sample_dir, source, capsys, "--model.threshold", flag)
    assert line.endswith(f"decision threshold {float(flag)}: {FLAG}")
    _assert_decoded_at(in_tmp, float(flag))


def test_the_checkpoint_beats_the_config(sample_dir, in_tmp, trained, capsys):
    source = _checkpoint(trained, in_tmp.parent / "zero.ckpt", 0.0)
    line = _predict(sample_dir, source, capsys)  # the shipped configs set 0.4
    assert line.endswith(f"decision threshold 0.0: {CHECKPOINT}")
    assert all(len(row["labels"].split()) == 6 for row in read_csv_rows(in_tmp / "out/sub.csv"))


@SLOW
@pytest.mark.parametrize("config", [True, False])
def test_the_config_decides_when_the_checkpoint_has_no_threshold(
    sample_dir, in_tmp, trained, capsys, config
):
    source = _checkpoint(trained, in_tmp.parent / "none.ckpt", None)
    line = _predict(sample_dir, source, capsys, config=config)
    expected = CONFIG_THRESHOLD if config else 0.5  # the model's signature default
    assert line.endswith(f"decision threshold {expected}: {CONFIG}")
    _assert_decoded_at(in_tmp, expected)


@SLOW
def test_a_cv_folder_s_thresholds_beat_the_checkpoint(sample_dir, in_tmp, trained, capsys):
    source = _cv_folder(trained, in_tmp.parent / "cv", checkpoint=1.0, tuned=0.0)
    line = _predict(sample_dir, source, capsys)
    assert line.endswith(f"decision threshold 0.0: {CV_FOLDER} (global)")
    assert all(len(row["labels"].split()) == 6 for row in read_csv_rows(in_tmp / "out/sub.csv"))


@SLOW
@pytest.mark.parametrize("flag", ["0.5", "0.49"])
def test_the_flag_beats_a_cv_folder_s_thresholds(sample_dir, in_tmp, trained, capsys, flag):
    source = _cv_folder(trained, in_tmp.parent / "cv", checkpoint=1.0, tuned=0.0)
    line = _predict(sample_dir, source, capsys, "--model.threshold", flag)
    assert line.endswith(f"decision threshold {float(flag)}: {FLAG}")
    _assert_decoded_at(in_tmp, float(flag))


@SLOW
def test_a_cv_folder_without_thresholds_uses_the_checkpoint_s(sample_dir, in_tmp, trained, capsys):
    source = _cv_folder(trained, in_tmp.parent / "cv", checkpoint=0.0, tuned=1.0)
    (source / "thresholds.json").unlink()
    line = _predict(sample_dir, source, capsys)
    assert line.endswith(f"decision threshold 0.0: {CHECKPOINT}")
    assert all(len(row["labels"].split()) == 6 for row in read_csv_rows(in_tmp / "out/sub.csv"))
