"""Helpers the tests share: the flags of a quick CLI run, log and CSV readers, error checks.

``PRECISION`` is filled by ``conftest.py`` from ``pytest --precision``; every training run of
``cli_args`` uses it.
"""

import csv
from pathlib import Path

import numpy as np

from {{ cookiecutter.package }}.cli import main

SAMPLE_DIR = Path(__file__).parent / "data"
CONFIG_DIR = Path(__file__).parents[1] / "configs"
PRECISION: list[str] = []


def cli_args(data_dir: Path, *extra: str) -> list[str]:
    """Flags for a quick CLI run on ``data_dir``: the baseline with the CPU overlay on top."""
    return [
        "--config",
        str(CONFIG_DIR / "baseline.yaml"),
        "--config",
        str(CONFIG_DIR / "cpu_debug.yaml"),
        "--data.data_dir",
        str(data_dir),
        "--data.image_size",
        "64",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.log_every_n_steps",
        "1",
        *PRECISION,
        *extra,
    ]


# Fit flags of one quick epoch: two training batches and one validation batch.
QUICK_EPOCH = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
]


def fit(data_dir: Path, *extra: str) -> int:
    """One quick epoch (``QUICK_EPOCH``), then ``extra``."""
    return main(["fit", *cli_args(data_dir, *QUICK_EPOCH, *extra)])


def read_csv_rows(path: Path) -> list[dict]:
    """The rows of a CSV file as dicts keyed by its header."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def logged(folder: Path, key: str) -> list[float]:
    """Every value of ``key`` in the CSV logs under ``folder``, oldest run first."""
    values = []
    for metrics in sorted(folder.rglob("metrics.csv")):
        values += [float(row[key]) for row in read_csv_rows(metrics) if row.get(key)]
    return values


def only_error_line(capsys) -> str:
    """The last stderr line, which must be the one ``error:`` line of a run with no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    assert err[-1].startswith("error: ")
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def assert_nothing_written(folder: Path) -> None:
    """``folder`` is empty."""
    assert sorted(p.name for p in folder.iterdir()) == []


def hamming_loss(targets, predicted) -> float:
    """A metric unlike samples-F1 (share of wrong label cells, lower is better) to swap in."""
    return float(np.mean(np.asarray(targets) != np.asarray(predicted)))
