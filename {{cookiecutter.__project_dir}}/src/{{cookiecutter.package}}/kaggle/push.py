"""The Kaggle side of a bundle: its ids, the datasets' metadata, the upload. Credentials are only
checked for presence: a token is never read, printed or stored here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..utils.errors import DataError, UserError

PROJECT = "{{ cookiecutter.project }}"
COMPETITION = "{{ cookiecutter.competition }}"
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,48}[a-z0-9])")
BASE_SLUG = re.sub(r"[^a-z0-9]+", "-", PROJECT.lower()).strip("-")[:38].strip("-")
USER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,48}[A-Za-z0-9])?")


class Ids(NamedTuple):
    """The Kaggle ids (``user/slug``) of both datasets and the notebook, and the competition."""

    code: str
    weights: str
    kernel: str
    competition: str


def check_ids(user: str, competition: str) -> Ids:
    """``Ids`` of a valid Kaggle user name and competition slug, else ``DataError`` naming it."""
    if not USER.fullmatch(user):
        raise DataError(f"--user {user!r}: not a Kaggle user name (letters, digits, - and _)")
    if not SLUG.fullmatch(competition):
        raise DataError(
            f"--competition {competition!r}: not a Kaggle slug (3-50 lowercase letters, digits"
            " and -, as in kaggle.com/competitions/<slug>)"
        )
    slug = f"{user}/{BASE_SLUG}"
    return Ids(f"{slug}-code", f"{slug}-weights", f"{slug}-submission", competition)


def dataset_metadata(dataset_id: str, what: str) -> dict[str, Any]:
    """``dataset-metadata.json`` of a private dataset (``kaggle datasets create|version``)."""
    return {
        "title": dataset_id.split("/")[1][:50],
        "id": dataset_id,
        "licenses": [{"name": "other"}],
        "subtitle": f"{what} for the {PROJECT} submission notebook"[:80],
    }


SETUP = (
    "create an API token on kaggle.com (Settings > API) and save it as ~/.kaggle/kaggle.json"
    " (chmod 600), or export KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
)
TIMEOUT = 1800.0  # seconds per command: an upload of large weights on a slow line fits
KERNEL_PUSH = ("kernels", "push", "-p")


class KaggleCliError(UserError):
    """The Kaggle CLI is missing, has no credentials, or one of its commands failed."""


def has_credentials() -> bool:
    """Whether an environment variable or a file (newest layouts too) holds Kaggle credentials."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    folders += [Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]
    return any((f / name).is_file() for f in folders for name in ("kaggle.json", "access_token"))


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


def _dataset_args(folder: Path, exists: bool, message: str) -> list[str]:
    """``datasets version`` (existing dataset) or ``datasets create`` (new one) for ``folder``."""
    if exists:
        return ["datasets", "version", "-p", str(folder), "-m", message]
    return ["datasets", "create", "-p", str(folder)]


def _shown(args: list[str]) -> str:
    return shlex.join(["kaggle", *args])


def manual_commands(datasets: Sequence[Path], kernel: Path, message: str) -> list[str]:
    """The commands a user runs to push by hand (first upload; ``version`` for later ones)."""
    lines = [_shown(_dataset_args(folder, False, message)) for folder in datasets]
    lines += [f"# later uploads: {_shown(_dataset_args(f, True, message))}" for f in datasets]
    return [*lines, _shown([*KERNEL_PUSH, str(kernel)])]


def push_bundle(
    datasets: dict[str, Path], kernel: Path, message: str, timeout: float = TIMEOUT
) -> None:
    """Create or version (as ``datasets status`` says) each dataset ``{id: folder}``, then push
    the kernel; a command still running after ``timeout`` seconds is stopped."""
    executable = kaggle_executable()
    for dataset_id, folder in datasets.items():
        exists = _run(executable, ["datasets", "status", dataset_id], timeout, check=False) == 0
        _run(executable, _dataset_args(folder, exists, message), timeout)
    _run(executable, [*KERNEL_PUSH, str(kernel)], timeout)


def _run(executable: str, args: list[str], timeout: float, check: bool = True) -> int:
    """Print and run ``kaggle ARGS``; its exit code, or ``KaggleCliError`` if it fails."""
    command = _shown(args)
    print(f"$ {command}", flush=True)
    try:
        code = subprocess.run([executable, *args], check=False, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        raise KaggleCliError(
            f"`{command}` did not finish within {timeout:g} s and was stopped;"
            " check the network, or allow more time with --timeout"
        ) from None
    except OSError as exc:
        raise KaggleCliError(f"could not run {executable}: {exc}") from None
    if check and code != 0:
        raise KaggleCliError(f"`{command}` failed (exit {code}); see its message above")
    return code
