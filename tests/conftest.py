"""Fixtures for testing the template: bake it as users do, with cookiecutter / pytest-cookies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:  # re-exported for the tests: tomllib is Python 3.11+, tomli its backport
    import tomllib  # noqa: F401
except ModuleNotFoundError:
    import tomli as tomllib  # type: ignore[no-redef]  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = ROOT / "{{cookiecutter.__project_dir}}"
DEFAULT_PROJECT = "kaggle-plant-pathology"
DEFAULT_PACKAGE = "challenge_xyz"

sys.path.insert(0, str(ROOT / "scripts"))
import render_from_template as setup_script  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # pytest-cookies bakes the template named by --template (default "."): pin it to this repo.
    config.option.template = str(ROOT)


def subprocess_env() -> dict[str, str]:
    """The environment for a baked project's commands: this one, less pytest's and the venv's
    variables; under pytest-xdist, each worker's share of the cores for PyTorch's threads (two
    suites that each spin a thread per core slow both down)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))
    return env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two groups for pytest-xdist (``--dist loadgroup``), of about the same length: the default
    project's slow tier, then its linters (test_baked_project.py defines the pytest run first, so
    that the worker takes nothing else while it runs); and every fast tier with the renamed
    project's linters. pytest-xdist hands out the largest groups first, so each starts at once on
    a worker of its own; each worker installs a project at most twice."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "installed" not in params:
            continue
        fast = params.get("tier") == "not slow" or params["installed"] != "defaults"
        item.add_marker(pytest.mark.xdist_group("fast-tiers" if fast else "defaults-slow-tier"))


def bake_files(project: Path) -> set[str]:
    """Every file of a baked project, as POSIX paths relative to it."""
    return {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}


def text_files(project: Path) -> dict[Path, str]:
    """Baked files that are text (images and other binaries left out)."""
    texts = {}
    for path in sorted(project.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if b"\0" not in data[:1024]:
                try:
                    texts[path] = data.decode("utf-8")
                except UnicodeDecodeError:
                    continue
    return texts


def run_cookiecutter(output_dir: Path, *answers: str) -> subprocess.CompletedProcess:
    """Run the ``cookiecutter`` command line as a user would, without prompts."""
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(output_dir)]
    return subprocess.run(
        [*command, str(ROOT), *answers], capture_output=True, text=True, timeout=300
    )


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; return its stdout (fail the test on an error)."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def repository_files(repo: Path) -> list[str]:
    """Files of a repository as they would be committed (tracked, or new and not ignored)."""
    if (repo / ".git").exists():
        listing = git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        return [name for name in listing.split("\0") if name and (repo / name).is_file()]
    return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())


def copy_as_new_repository(dest: Path, message: str) -> Path:
    """Copy this template repository's files to ``dest`` as a fresh git repository, committed."""
    for name in repository_files(ROOT):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.name", "Test")
    git(dest, "config", "user.email", "test@example.com")
    git(dest, "add", "--all")
    git(dest, "commit", "-q", "-m", message)
    return dest


@pytest.fixture(scope="session")
def hook():
    """The pre-generation hook, unrendered, as a module: its checks are unit-tested directly."""
    return setup_script.load_hook(ROOT / "hooks" / "pre_gen_project.py")


@pytest.fixture
def bake(cookies):
    """Bake with extra context; assert success; return the project path."""

    def _bake(**context: str) -> Path:
        result = cookies.bake(extra_context=context)
        assert result.exception is None, result.exception
        assert result.exit_code == 0
        return Path(result.project_path)

    return _bake
