"""The commands that do not train never load torch or Lightning, so they start at once."""

import subprocess
import sys
from pathlib import Path

import pytest

TRAINING_MODULES = ("torch", "torchvision", "pytorch_lightning", "lightning_fabric", "jsonargparse")

# Runs ``main(ARGS)`` in a fresh interpreter; prints its exit status, then the training
# modules that were imported.
SCRIPT = """
import contextlib, io, sys
from {{ cookiecutter.package }}.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    status = main(sys.argv[1:])
print(status, *(name for name in {modules!r} if name in sys.modules))
"""


def _run_in_fresh_python(args: list[str], cwd: Path) -> list[str]:
    """``[exit status, training modules imported...]`` of ``main(args)`` in a new process."""
    script = SCRIPT.format(modules=TRAINING_MODULES)
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize(
    "args",
    [["--help"], ["prepare", "--help"], ["sample-data", "--help"], ["submit", "--help"], []],
    ids=["help", "prepare-help", "sample-data-help", "submit-help", "no-args"],
)
def test_help_loads_no_training_modules(tmp_path, args):
    status, *loaded = _run_in_fresh_python(args, tmp_path)
    assert status == ("2" if not args else "0")
    assert loaded == []


def test_sample_data_and_prepare_load_no_training_modules(tmp_path):
    sample = ["sample-data", "sample", "--n-train", "6", "--n-test", "2"]
    assert _run_in_fresh_python(sample, tmp_path) == ["0"]
    prepare = ["prepare", "sample", "cache", "--size", "32", "--workers", "2"]
    assert _run_in_fresh_python(prepare, tmp_path) == ["0"]
    assert (tmp_path / "cache" / "cache.json").is_file()
    refused = ["prepare", "missing", "cache2"]  # a user error is reported without them too
    assert _run_in_fresh_python(refused, tmp_path) == ["2"]
