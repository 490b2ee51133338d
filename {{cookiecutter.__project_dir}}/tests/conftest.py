"""Shared fixtures: every test runs on the bundled sample images, on the CPU, in a temp folder.

``pytest --precision 32-true`` (or ``bf16-mixed``) runs every training test at that precision
instead of the one detected for this CPU; CI runs the suite under both.
"""

import csv
import shutil
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.cli import main

SAMPLE_DIR = Path(__file__).parent / "data"
CONFIG_DIR = Path(__file__).parents[1] / "configs"
PRECISION: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--precision",
        default=None,
        help="Trainer precision for every training test (default: detected for this machine)",
    )


def pytest_configure(config: pytest.Config) -> None:
    precision = config.getoption("--precision")
    if precision:
        PRECISION[:] = ["--trainer.precision", precision]


def pytest_report_header(config: pytest.Config) -> str:
    return f"training precision: {config.getoption('--precision') or 'detected'}"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The committed sample set (read-only: copy it before changing anything)."""
    return SAMPLE_DIR


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A private copy of the sample set that a test may break."""
    return Path(shutil.copytree(SAMPLE_DIR, tmp_path / "data"))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside an empty folder, so outputs land there and can be inspected."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def cheap_trainer_kwargs(tmp_path: Path) -> dict:
    """Trainer settings that keep a training test to seconds."""
    return {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(tmp_path),
        **({"precision": PRECISION[1]} if PRECISION else {}),
    }


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
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def logged(folder: Path, key: str) -> list[float]:
    """Every value of ``key`` in the CSV logs under ``folder``, oldest run first."""
    values = []
    for metrics in sorted(folder.rglob("metrics.csv")):
        values += [float(row[key]) for row in read_csv_rows(metrics) if row.get(key)]
    return values


def only_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    assert err[-1].startswith("error: ")
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def assert_nothing_written(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == []


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A checkpoint trained for a few steps once per session, outside any test's folder.

    Tests must not change it: copy it first (``torch.save`` an edited copy elsewhere).
    """
    out = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(out)
        assert fit(SAMPLE_DIR) == 0
    return out / "checkpoints" / "last.ckpt"
