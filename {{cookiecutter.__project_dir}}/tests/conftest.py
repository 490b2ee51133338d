"""Shared fixtures: every test runs on the bundled sample images, on the CPU, in a temp folder."""

import shutil
from pathlib import Path

import pytest

SAMPLE_DIR = Path(__file__).parent / "data"
CONFIG_DIR = Path(__file__).parents[1] / "configs"


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
    }


def cli_args(data_dir: Path, *extra: str) -> list[str]:
    """Flags for a quick CLI run on ``data_dir`` with the CPU debug config."""
    return [
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
        *extra,
    ]
