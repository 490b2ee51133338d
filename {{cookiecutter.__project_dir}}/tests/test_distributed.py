"""Two CPU processes (DDP over gloo) give the same submission and metrics as one.

A distributed sampler gives each process its share of the images and pads the shares to equal
length with repeated images; each process's predictions must be gathered and the repeats dropped.
Runs in the slow tier: each run starts two Python processes.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package }}.data import PlantDataModule

from helpers import cli_args, logged, read_csv_rows

pytestmark = pytest.mark.slow

COMMAND = [sys.executable, "-m", "{{ cookiecutter.package }}.cli"]
TWO_PROCESSES = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
# Compared across process counts: float32, so that batch composition cannot change a number.
FLOAT32 = ["--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false"]


def run(cwd: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PL_", "LOCAL_RANK"))}
    result = subprocess.run(
        [*COMMAND, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


def probabilities(path: Path) -> np.ndarray:
    return np.array(
        [[float(v) for k, v in row.items() if k != "image"] for row in read_csv_rows(path)]
    )


def test_predict_on_two_processes_writes_every_image_once(trained, data_copy, tmp_path):
    # 13 test images: two processes get 7 each, one of them padded with a repeat
    first = sorted((data_copy / "test_images").iterdir())[0]
    shutil.copy(first, data_copy / "test_images" / "zz_extra.jpg")
    outputs = {}
    for name, extra in (("one", []), ("two", TWO_PROCESSES)):
        work = tmp_path / name
        work.mkdir()
        args = ["--ckpt_path", str(trained), *FLOAT32, *extra]
        args += ["--submission.probabilities_path", "probs.csv", "--data.batch_size", "4"]
        run(work, "predict", *cli_args(data_copy, *args))
        outputs[name] = work
    one = read_csv_rows(outputs["one"] / "submission.csv")
    two = read_csv_rows(outputs["two"] / "submission.csv")
    assert len(one) == 13
    assert [row["image"] for row in two] == [row["image"] for row in one]
    np.testing.assert_allclose(
        probabilities(outputs["two"] / "probs.csv"),
        probabilities(outputs["one"] / "probs.csv"),
        atol=1e-4,
    )
    assert two == one


def odd_fold(folds: int) -> int:
    """A fold whose validation set has an odd size, so that two processes need padding."""
    for fold in range(folds):
        dm = PlantDataModule(str(Path(__file__).parent / "data"), val_fraction=1 / folds, fold=fold)
        dm.setup("fit")
        if len(dm.val_set) % 2:
            return fold
    raise AssertionError("no fold of odd size")


def test_validation_scores_each_image_once_on_two_processes(trained, sample_dir, tmp_path):
    fold = odd_fold(3)
    scores = {}
    for name, extra in (("one", []), ("two", TWO_PROCESSES)):
        work = tmp_path / name
        work.mkdir()
        args = ["--ckpt_path", str(trained), *FLOAT32, *extra, "--data.fold", str(fold)]
        args += ["--data.val_fraction", str(1 / 3), "--trainer.limit_val_batches", "1.0"]
        run(work, "validate", *cli_args(sample_dir, *args))
        (scores[name],) = logged(work / "logs", "val/f1")
    assert scores["two"] == pytest.approx(scores["one"], abs=1e-6)
