"""Slow tier: install baked projects in a venv and run their own linters and test suites.

Each project gets a venv layered on this one (see scripts/layered_venv.py), so PyTorch and the
other heavy dependencies are not installed again. The project installs itself as its users do,
with ``make install``: its requirements.lock (hashes checked, no other dependency), the project,
``pip check``, the git hooks. What the lock pins at another version than this repository's
uv.lock is installed into the layered venv, so the suites run on the baked lock's versions.

No subprocess here has a time limit: how busy the machine is must not decide a test.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cookiecutter, subprocess_env

pytestmark = pytest.mark.slow

VARIANTS = {
    "defaults": [],
    "leaf_doctor": [
        "project=leaf-doctor",
        "package=leaf_doctor",
        "license=Apache-2.0",
        "python_min=3.11",
    ],
}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=subprocess_env())
    assert (
        result.returncode == 0
    ), f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def installed(request, tmp_path_factory) -> tuple[Path, Path, str]:
    """(project folder, venv python, package) of a baked and installed project."""
    work = tmp_path_factory.mktemp(request.param)
    result = run_cookiecutter(work, *VARIANTS[request.param])
    assert result.returncode == 0, result.stderr
    (project,) = [p for p in work.iterdir() if p.is_dir()]
    python = Path(
        _run(
            [sys.executable, str(ROOT / "scripts" / "layered_venv.py"), str(work / ".venv")], work
        ).stdout.strip()
    )
    _run(["git", "init", "-q"], project)
    _run(["make", "install", f"PYTHON={python}"], project)
    package = "leaf_doctor" if request.param == "leaf_doctor" else "challenge_xyz"
    return project, python, package


# The baked suites run under both precisions a CPU may pick: bf16-mixed (CPUs with native
# bfloat16, like this machine) and 32-true (most CI runners); neither may decide a test. The
# README's demo (tests/test_demo.py) trains under the machine's own choice.
# (variant, precision, tests) of each baked pytest run. Together they run the whole suite of the
# defaults in float32, and the fast tier once more, renamed and in bf16: what a rename or the
# other precision could break. The slow tier is the longest run: defined first, it runs before the
# default project's linters on a worker of its own (tests/conftest.py), while the other worker
# runs the fast tiers.
RUNS = [
    ("defaults", "32-true", "slow"),
    ("defaults", "32-true", "not slow"),
    ("leaf_doctor", "bf16-mixed", "not slow"),
]


@pytest.mark.parametrize(
    ("installed", "precision", "tier"),
    RUNS,
    indirect=["installed"],
    ids=["-".join(run).replace(" ", "-") for run in RUNS],
)
def test_baked_pytest(installed, precision, tier):
    project, python, _ = installed
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "--precision", precision]
    out = _run([*command, "-m", tier], project).stdout
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert f"training precision: {precision}" in out
    unexpected = [line for line in out.splitlines() if is_unexpected_skip(line)]
    assert unexpected == [], "\n".join(unexpected)


def test_black(installed):
    project, python, _ = installed
    _run([str(python), "-m", "black", "--check", "."], project)


def test_flake8(installed):
    project, python, _ = installed
    _run([str(python), "-m", "flake8"], project)


def test_pre_commit_config_is_valid(installed):
    project, python, _ = installed
    _run([str(python), "-m", "pre_commit", "validate-config"], project)


def test_mypy(installed):
    """The package ships py.typed: mypy (configured in its pyproject.toml) finds nothing."""
    project, python, _ = installed
    out = _run([str(python), "-m", "mypy"], project).stdout
    assert out.strip().startswith("Success: no issues found"), out


def test_make_install_installed_the_lock_and_the_git_hooks(installed):
    project, python, package = installed
    assert (project / ".git" / "hooks" / "pre-commit").is_file()
    probe = (
        "import pytorch_lightning as pl, mypy.version as m; print(pl.__version__, m.__version__)"
    )
    lightning, mypy = _run([str(python), "-c", probe], project).stdout.split()
    lock = (project / "requirements.lock").read_text()
    assert f"\npytorch-lightning=={lightning} " in lock and f"\nmypy=={mypy} " in lock


def test_make_help_lists_the_usual_jobs(installed):
    project, python, package = installed
    out = _run(["make", "help"], project).stdout
    assert [line.split()[0] for line in out.splitlines()] == [
        "help",
        "install",
        "lock",
        "lint",
        "test",
        "demo",
        "fit",
        "predict",
        "figures",
        "parity",
    ]
    dry = _run(["make", "-n", "demo", f"PACKAGE={python.parent / package}"], project).stdout
    assert "--config configs/baseline.yaml --config configs/cpu_debug.yaml" in dry


def test_console_script_lists_every_command_without_loading_lightning(installed):
    project, python, package = installed
    script = python.parent / package
    out = _run([str(script), "--help"], project).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == [
        "fit",
        "validate",
        "test",
        "predict",
        "cv",
        "distill",
        "tune",
        "package",
        "submit",
        "ledger",
        "report",
        "prepare",
        "sample-data",
    ]
    probe = (
        f"import sys; from {package}.cli import main; main(['--help']);"
        " print('LOADED' if 'pytorch_lightning' in sys.modules or 'torch' in sys.modules else '')"
    )
    assert "LOADED" not in _run([str(python), "-c", probe], project).stdout


# Skips that depend on the machine; any other (a missing extra, the PostgreSQL test where the
# server binaries are installed) means a test the README promises did not run.
MACHINE_SKIPS = ("reads /proc", "patches a worker", "another filesystem", "has a GPU")


def postgres_installed() -> bool:
    """initdb on PATH or where Debian and Ubuntu keep it (what scripts/bootstrap.sh installs)."""
    return bool(shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def is_unexpected_skip(line: str) -> bool:
    """A ``-ra`` summary line of a skipped test that should have run on this machine."""
    if not line.startswith("SKIPPED"):
        return False
    if any(reason in line for reason in MACHINE_SKIPS):
        return False
    return postgres_installed() or "initdb" not in line
