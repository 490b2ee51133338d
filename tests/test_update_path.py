"""The update path the README documents: bake a tagged release, then update with cruft."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, copy_as_new_repository, git, repository_files

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


def commit_new_repository(folder: Path, message: str) -> None:
    """Make ``folder`` a git repository with everything in it committed."""
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "Test"],
        ["config", "user.email", "test@example.com"],
        ["add", "--all"],
        ["commit", "-q", "-m", message],
    ):
        git(folder, *args)


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
    commit_new_repository(project, "baked v0.1.0")
    _run(
        [cruft, "update", "--checkout", "v0.2.0", "--skip-apply-ask"],
        project,
        isolated_home,
    )
    assert MARKER in (project / "README.md").read_text()
    assert (project / "src" / "leaf_doctor" / "cli" / "__init__.py").is_file()
    assert json.loads((project / ".cruft.json").read_text())["checkout"] == "v0.2.0"


# The last release with the flat package; the layout move (recipe on top, machinery in
# subpackages) comes after it. CHANGELOG.md lists every file the move renamed.
FLAT_RELEASE = "v0.2.0"
# The commit that release tag names: a clone of main carries the commits but not always the tags.
FLAT_RELEASE_COMMIT = "6db2bde88807d70696b25cefb6f1a41ed2484f40"
# A user's edit of the loss (label smoothing), in the recipe file a Kaggler edits for it.
LOSS_LINE = "        return self.criterion(logits, targets.to(logits.dtype))\n"
USER_LOSS = (
    "        smoothed = targets.to(logits.dtype) * 0.9 + 0.05  # my edit: label smoothing\n"
    "        return self.criterion(logits, smoothed)\n"
)


@pytest.fixture
def across_the_move(tmp_path: Path) -> Path:
    """A template repository with two tags: the flat release, then this working tree as NEXT."""
    repo = tmp_path / "template"
    repo.mkdir()
    if git(ROOT, "rev-parse", "--is-shallow-repository").strip() == "true":
        pytest.skip(f"a shallow clone lacks the {FLAT_RELEASE} commit: git fetch --unshallow")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", FLAT_RELEASE_COMMIT],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, (
        f"the {FLAT_RELEASE} commit {FLAT_RELEASE_COMMIT[:7]} is missing from this clone"
        f" ({archive.stderr.decode().strip()})"
    )
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    commit_new_repository(repo, FLAT_RELEASE)
    git(repo, "tag", FLAT_RELEASE)
    for name in git(repo, "ls-files").splitlines():
        (repo / name).unlink()
    for name in repository_files(ROOT):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", "next")
    git(repo, "tag", "next")
    return repo


@pytest.mark.slow
def test_cruft_update_across_the_layout_move_keeps_the_user_s_recipe_edits(
    across_the_move, tmp_path, isolated_home
):
    """A project baked from the flat release, with the user's edits to recipe files, updates to
    the new layout: the machinery moves into subpackages, the edits stay, nothing is rejected."""
    work = tmp_path / "work"
    work.mkdir()
    cruft = str(BIN / "cruft")
    create = [cruft, "create", str(across_the_move), "--checkout", FLAT_RELEASE, "--no-input"]
    _run([*create, "--extra-context", json.dumps({"package": "leaf_doctor"})], work, isolated_home)
    project = work / "kaggle-plant-pathology"
    package = project / "src" / "leaf_doctor"
    assert (package / "crossval.py").is_file() and not (package / "workflows").exists()
    commit_new_repository(project, "baked the flat release")
    models = package / "models.py"
    assert LOSS_LINE in models.read_text()
    models.write_text(models.read_text().replace(LOSS_LINE, USER_LOSS))
    config = project / "configs" / "baseline.yaml"
    config.write_text(config.read_text().replace("max_epochs: 12", "max_epochs: 30"))
    git(project, "commit", "-q", "-am", "my edits")
    _run([cruft, "update", "--checkout", "next", "--skip-apply-ask"], project, isolated_home)

    assert USER_LOSS in models.read_text()
    assert "max_epochs: 30" in config.read_text()
    left = [p.name for p in project.rglob("*") if p.suffix in (".rej", ".orig")]
    conflicts = [
        str(p.relative_to(project))
        for p in project.rglob("*.py")
        if "<<<<<<<" in p.read_text(errors="replace")
    ]
    assert left == [] and conflicts == []
    assert (package / "workflows" / "cv.py").is_file() and (
        package / "cli" / "__init__.py"
    ).is_file()
    assert not (package / "crossval.py").exists() and not (package / "cli.py").exists()
    probe = "import leaf_doctor.cli, leaf_doctor.workflows.cv, leaf_doctor.models"
    env = dict(isolated_home, PYTHONPATH=str(project / "src"))
    _run([sys.executable, "-c", probe], project, env)
