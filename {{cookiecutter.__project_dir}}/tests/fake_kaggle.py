"""A stand-in ``kaggle`` command for the tests of ``package --push``, ``submit`` and ``ledger``."""

import os
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.kaggle import push


def install_fake_kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """Put a ``kaggle`` running the Python ``script`` first on PATH, with a fresh HOME and no
    Kaggle credentials or configuration in the environment; the folder that holds it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "kaggle"
    command.write_text(f"#!{sys.executable}\n{script}", encoding="utf-8")
    command.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME", *push.SECRETS, "KAGGLE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    return bin_dir
