"""Shared fixtures: every test runs on the bundled sample images, on the CPU, in a temp folder.

Plain helpers (command-line flags, readers, assertions) live in ``helpers.py``, imported by name.

``pytest --precision 32-true`` (or ``bf16-mixed``) runs every training test at that precision
instead of the one detected for this CPU; CI runs the suite under both.
"""

import shutil
from pathlib import Path

import pytest

from helpers import PRECISION, SAMPLE_DIR, fit, hamming_loss
from {{ cookiecutter.package }} import metrics
from {{ cookiecutter.package }}.reports import ledger


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


@pytest.fixture(scope="session", autouse=True)
def session_ledger(tmp_path_factory) -> Path:
    """The ledger every run of the session records into, so that no test writes one into the
    folder pytest runs from; a test of the ledger points ``ledger.LEDGER`` at its own."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("ledger") / "ledger.csv"
        patch.setattr(ledger, "LEDGER", path)
        yield path


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


@pytest.fixture
def swapped_metric(monkeypatch: pytest.MonkeyPatch) -> str:
    """``metrics.py`` edited as a user would to compete on Hamming loss; the metric's new name."""
    monkeypatch.setattr(metrics, "score", hamming_loss)
    monkeypatch.setattr(metrics, "NAME", "hamming")
    monkeypatch.setattr(metrics, "HIGHER_IS_BETTER", False)
    return "hamming"
