"""Upload a bundle with the Kaggle CLI: the two datasets, then the notebook.

``push_bundle`` runs, printing each command first, ``kaggle datasets status ID`` for each dataset
and then ``kaggle datasets version -p DIR -m MSG`` if it exists or ``kaggle datasets create -p
DIR`` if not, and finally ``kaggle kernels push -p DIR``; a command that does not finish within
its timeout is stopped. ``manual_commands`` are the same
commands for a user who pushes by hand. Credentials are only checked for presence: a token is
never read, printed or stored here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..utils.errors import UserError

SETUP = (
    "create an API token on kaggle.com (Settings > API) and save it as ~/.kaggle/kaggle.json"
    " (chmod 600), or export KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
)
TIMEOUT = 1800.0  # seconds per command: an upload of large weights on a slow line fits


class KaggleCliError(UserError):
    """The Kaggle CLI is missing, has no credentials, or one of its commands failed."""


def credential_files() -> list[Path]:
    """Where the Kaggle CLI looks for credentials, newest layouts included."""
    home = Path.home()
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    folders += [home / ".kaggle", home / ".config" / "kaggle"]
    return [folder / name for folder in folders for name in ("kaggle.json", "access_token")]


def has_credentials() -> bool:
    """Whether an environment variable or a file gives the Kaggle CLI credentials."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    return any(path.is_file() for path in credential_files())


def kaggle_executable() -> str:
    """The ``kaggle`` command on PATH with credentials; ``KaggleCliError`` saying how to set up."""
    found = shutil.which("kaggle")
    if found is None:
        raise KaggleCliError(
            "--push needs the Kaggle CLI: pip install kaggle, then " + SETUP.split(", or")[0]
        )
    if not has_credentials():
        raise KaggleCliError(f"--push: no Kaggle credentials found; {SETUP}")
    return found


def dataset_command(folder: Path, exists: bool, message: str) -> list[str]:
    """``kaggle datasets version`` (existing dataset) or ``create`` (new one) for ``folder``."""
    if exists:
        return ["kaggle", "datasets", "version", "-p", str(folder), "-m", message]
    return ["kaggle", "datasets", "create", "-p", str(folder)]


def kernel_command(folder: Path) -> list[str]:
    """``kaggle kernels push`` for the notebook folder."""
    return ["kaggle", "kernels", "push", "-p", str(folder)]


def manual_commands(datasets: Sequence[Path], kernel: Path, message: str) -> list[str]:
    """The commands a user runs to push by hand (first upload; ``version`` for later ones)."""
    lines = [shlex.join(dataset_command(folder, False, message)) for folder in datasets]
    lines += [
        f"# later uploads: {shlex.join(dataset_command(folder, True, message))}"
        for folder in datasets
    ]
    return [*lines, shlex.join(kernel_command(kernel))]


def push_bundle(
    datasets: dict[str, Path], kernel: Path, message: str, timeout: float = TIMEOUT
) -> None:
    """Create or version each dataset (``{id: folder}``), then push the kernel.

    Each command is stopped after ``timeout`` seconds (``KaggleCliError`` naming it).
    """
    executable = kaggle_executable()
    for dataset_id, folder in datasets.items():
        status = ["kaggle", "datasets", "status", dataset_id]
        exists = _run(executable, status, timeout, check=False) == 0
        _run(executable, dataset_command(folder, exists, message), timeout)
    _run(executable, kernel_command(kernel), timeout)


def _run(executable: str, command: list[str], timeout: float, check: bool = True) -> int:
    print("$ " + shlex.join(command), flush=True)
    try:
        code = subprocess.run([executable, *command[1:]], check=False, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        raise KaggleCliError(
            f"`{shlex.join(command)}` did not finish within {timeout:g} s and was stopped;"
            " check the network, or allow more time with --timeout"
        ) from None
    except OSError as exc:
        raise KaggleCliError(f"could not run {executable}: {exc}") from None
    if check and code != 0:
        raise KaggleCliError(f"`{shlex.join(command)}` failed (exit {code}); see its message above")
    return code
