"""The update path the README documents: bake a tagged release, then update with cruft."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_as_new_repository, git

BIN = Path(sys.executable).parent
MARKER = "Changed in v0.2.0"


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A clone of the template with tags v0.1.0 and v0.2.0 (which adds MARKER to the README)."""
    repo = copy_as_new_repository(tmp_path / "template", "v0.1.0")
    git(repo, "tag", "v0.1.0")
    readme = repo / "{{cookiecutter.__project_dir}}" / "README.md"
    readme.write_text(readme.read_text() + f"\n{MARKER}\n")
    git(repo, "commit", "-q", "-am", "v0.2.0")
    git(repo, "tag", "v0.2.0")
    return repo


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch) -> dict:
    """Keep cookiecutter's clone cache and replay files inside the test folder."""
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(
        f"cookiecutters_dir: {tmp_path / 'cc-cache'}\nreplay_dir: {tmp_path / 'cc-replay'}\n"
    )
    env = dict(os.environ, COOKIECUTTER_CONFIG=str(config), HOME=str(tmp_path))
    return env


def _run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_bake_a_tagged_release(released, tmp_path, isolated_home):
    out = tmp_path / "out"
    command = [str(BIN / "cookiecutter"), "--no-input", "-o", str(out), f"git+file://{released}"]
    _run([*command, "--checkout", "v0.1.0"], tmp_path, isolated_home)
    assert MARKER not in (out / "kaggle-plant-pathology" / "README.md").read_text()
    shutil.rmtree(out)
    _run([*command, "--checkout", "v0.2.0"], tmp_path, isolated_home)
    assert MARKER in (out / "kaggle-plant-pathology" / "README.md").read_text()


def test_cruft_create_then_update(released, tmp_path, isolated_home):
    work = tmp_path / "work"
    work.mkdir()
    cruft = str(BIN / "cruft")
    create = [cruft, "create", str(released), "--checkout", "v0.1.0", "--no-input"]
    _run([*create, "--extra-context", json.dumps({"package": "leaf_doctor"})], work, isolated_home)
    project = work / "kaggle-plant-pathology"
    assert (project / "src" / "leaf_doctor" / "cli" / "__init__.py").is_file()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "Test"],
        ["config", "user.email", "test@example.com"],
        ["add", "--all"],
        ["commit", "-q", "-m", "baked v0.1.0"],
    ):
        git(project, *args)
    _run(
        [cruft, "update", "--checkout", "v0.2.0", "--skip-apply-ask"],
        project,
        isolated_home,
    )
    assert MARKER in (project / "README.md").read_text()
    assert (project / "src" / "leaf_doctor" / "cli" / "__init__.py").is_file()
    assert json.loads((project / ".cruft.json").read_text())["checkout"] == "v0.2.0"
