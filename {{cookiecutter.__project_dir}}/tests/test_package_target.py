"""``package`` deletes nothing it did not make, and stops cleanly on a timeout or a signal.

Each refusal is checked in the layout a user has: a project that is a git repository with
``data/``, checkpoints under it, a cv folder. The project here is a stand-in folder (the refusal
comes before any build), so a regression cannot delete the project that runs these tests.
"""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.kaggle import bundle as kaggle_bundle
from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.utils.errors import UserError
from {{ cookiecutter.package }}.kaggle.push import push_bundle

from helpers import only_error_line
from full_disk import fill_disk
from fake_runs import CLASSES, fake_checkpoint, fake_cv_folder, package


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content: what must survive a refused run."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A user's project (git repository, data/, a checkpoint, a cv folder) as package sees it."""
    root = tmp_path / "work" / "project"
    for folder in (".git", "data", "src", "checkpoints"):
        (root / folder).mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "data" / "train.csv").write_text("image,labels\na.jpg,healthy\n")
    real = kaggle_bundle.project_root()
    shutil.copytree(real / "src", root / "src", dirs_exist_ok=True)  # so a wheel still builds
    shutil.copy2(real / "pyproject.toml", root / "pyproject.toml")
    fake_checkpoint(root / "checkpoints" / "last.ckpt")
    fake_cv_folder(root / "runs" / "cv", [CLASSES, CLASSES])
    monkeypatch.setattr(kaggle_bundle, "project_root", lambda: root)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(root)
    return root


def refused(capsys, *args: str) -> str:
    """Run ``package`` with ``args`` and ``--user u``; it must refuse in one line."""
    assert main(["package", *args, "--user", "u"]) == 2
    return only_error_line(capsys)


@pytest.mark.parametrize(
    "source, out, what",
    [
        ("checkpoints/last.ckpt", "checkpoints", "the checkpoint or cv folder"),
        ("runs/cv", "runs/cv", "the checkpoint or cv folder"),
        ("runs/cv", "runs", "the checkpoint or cv folder"),
        ("checkpoints/last.ckpt", ".", "the working directory"),
        ("checkpoints/last.ckpt", "..", "the working directory"),
        ("checkpoints/last.ckpt", "data/..", "the working directory"),
    ],
)
def test_force_never_replaces_the_source_the_project_or_the_working_directory(
    project, capsys, source, out, what
):
    before = snapshot(project)
    assert what in refused(capsys, source, out, "--force")
    assert snapshot(project) == before
    assert not list(project.parent.rglob(".*partial-*"))


def test_force_never_replaces_the_project_or_home_seen_from_elsewhere(
    project, tmp_path, capsys, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = snapshot(project)
    ckpt = str(project / "checkpoints" / "last.ckpt")
    assert "the project" in refused(capsys, ckpt, str(project), "--force")
    assert "the project" in refused(capsys, ckpt, str(project.parent), "--force")
    assert "home folder" in refused(capsys, ckpt, os.environ["HOME"], "--force")
    assert snapshot(project) == before


def test_force_replaces_only_a_folder_that_is_an_earlier_bundle(project, capsys):
    mine = project / "notes"
    mine.mkdir()
    (mine / "ideas.md").write_text("try a larger image size")
    message = refused(capsys, "checkpoints/last.ckpt", "notes", "--force")
    assert "ideas.md, which package does not write" in message
    assert (mine / "ideas.md").read_text() == "try a larger image size"

    assert package("checkpoints/last.ckpt", "bundle", "--user", "u")[0] == 0
    (project / "bundle" / "kernel" / "my-notes.txt").write_text("keep me")
    message = refused(capsys, "checkpoints/last.ckpt", "bundle", "--force")
    assert "kernel/my-notes.txt, which package does not write" in message
    assert (project / "bundle" / "kernel" / "my-notes.txt").read_text() == "keep me"

    (project / "bundle" / "kernel" / "my-notes.txt").unlink()
    code, _ = package("checkpoints/last.ckpt", "bundle", "--user", "u", "--force", "--tta", "flips")
    assert code == 0
    assert '"tta": "flips"' in (project / "bundle" / "weights" / "manifest.json").read_text()


def test_a_bundle_has_ordinary_permissions(project):
    old = os.umask(0o022)
    try:
        assert package("checkpoints/last.ckpt", "bundle", "--user", "u")[0] == 0
    finally:
        os.umask(old)
    for folder in ("bundle", "bundle/code", "bundle/weights", "bundle/kernel"):
        assert stat.S_IMODE((project / folder).stat().st_mode) == 0o755, folder
    assert stat.S_IMODE((project / "bundle/weights/manifest.json").stat().st_mode) == 0o644


def ended_process_id() -> int:
    """The id of a process that has exited (so no process has it, for now)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_the_partial_folders_of_a_killed_run_are_removed_by_the_next_one(project):
    dead = ended_process_id()
    stale = [project / f".bundle.partial-{dead}-x1y2", project / ".bundle.old"]
    kept = [
        project / f".bundle.partial-{os.getppid()}-live",  # a run still building it
        project / f".other.partial-{dead}-z",  # another target's
    ]
    for folder in stale + kept:
        (folder / "weights").mkdir(parents=True)
    assert package("checkpoints/last.ckpt", "bundle", "--user", "u")[0] == 0
    assert [folder.exists() for folder in stale + kept] == [False, False, True, True]


def test_a_signal_during_the_build_removes_the_partial_bundle(project, capsys, monkeypatch):
    def killed(*args) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(kaggle_bundle, "write_weights", killed)
    handler = signal.getsignal(signal.SIGTERM)
    assert main(["package", "checkpoints/last.ckpt", "bundle", "--user", "u"]) == 143
    assert "stopped by SIGTERM" in only_error_line(capsys)
    assert not (project / "bundle").exists()
    assert not list(project.glob(".bundle*"))
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(project, capsys, monkeypatch):
    out = project / "bundles" / "bundle"
    out.parent.mkdir()
    fill_disk(monkeypatch, out.parent)
    message = refused(capsys, "checkpoints/last.ckpt", str(out))
    assert "the disk is full" in message and str(out.parent) in message
    assert list(out.parent.iterdir()) == []


def hanging_kaggle(folder: Path) -> Path:
    """A stand-in ``kaggle`` that writes its process id to ``folder/started`` and never answers."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "kaggle"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, pathlib, time\n"
        f"pathlib.Path({str(folder / 'started')!r}).write_text(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    script.chmod(0o755)
    return script


def test_a_kaggle_command_that_never_answers_is_stopped_at_the_timeout(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    hanging_kaggle(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "secret-token-1")
    folders = {"u/x-code": tmp_path, "u/x-weights": tmp_path}
    with pytest.raises(UserError, match=r"`kaggle datasets status u/x-code` did not finish within"):
        push_bundle(folders, tmp_path, "v1", timeout=0.5)
    pid = int((bin_dir / "started").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the stand-in was stopped, not left running


@pytest.mark.parametrize("value", ["0", "-3", "inf", "soon"])
def test_a_bad_timeout_is_refused(project, capsys, value):
    message = refused(capsys, "checkpoints/last.ckpt", "bundle", "--timeout", value)
    assert "argument --timeout" in message
    assert not (project / "bundle").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_during_a_push_ends_in_one_line(trained, tmp_path, signum, code):
    bin_dir = tmp_path / "bin"
    hanging_kaggle(bin_dir)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(home)}
    env["KAGGLE_API_TOKEN"] = "secret-token-2"
    command = [sys.executable, "-m", "{{ cookiecutter.package }}.cli", "package"]
    command += [str(trained), str(tmp_path / "bundle"), "--user", "u", "--push"]
    run = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 600
    while not (bin_dir / "started").exists() and run.poll() is None:
        assert time.monotonic() < deadline, "the stand-in kaggle never started"
        time.sleep(0.1)
    run.send_signal(signum)
    _, err = run.communicate(timeout=300)
    assert run.returncode == code, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("error: stopped by")
    assert "secret-token-2" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(int((bin_dir / "started").read_text()), 0)
