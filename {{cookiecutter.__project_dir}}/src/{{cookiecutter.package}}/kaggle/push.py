"""The Kaggle side of a bundle: its ids, the datasets' metadata, the upload with the Kaggle CLI,
waiting until each upload is ready and following the notebook's run. Credentials are only checked
for presence; their values are blanked out of any output echoed."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
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
    "create an API token on kaggle.com (Settings > API) and export it as KAGGLE_API_TOKEN, or save"
    " it as ~/.kaggle/access_token (legacy: ~/.kaggle/kaggle.json, chmod 600)"
)
TIMEOUT = 1800.0  # seconds per command: an upload of large weights on a slow line fits
WAIT = 7200.0  # seconds to wait for an upload to be ready, then for the notebook's run (GPU: 2 h)
POLL = 30.0  # seconds between two status queries
KERNEL_PUSH = ("kernels", "push", "-p")
KERNEL_METADATA = "kernel-metadata.json"
# What Kaggle CLI 2.x prints, with exit code 0, when an upload or a push was refused.
REFUSED = re.compile(r"creation error|push error|not valid \w+ sources", re.IGNORECASE)
# ``kernels status`` prints ``owner/slug has status "KernelWorkerStatus.RUNNING"``.
KERNEL_STATUS = re.compile(r'has status "(?:\w+\.)?(\w+)"')
DATASET_FAILED = ("failed", "deleted")
KERNEL_FAILED = ("error", "cancel_requested", "cancel_acknowledged")
SECRETS = ("KAGGLE_API_TOKEN", "KAGGLE_KEY")


class KaggleCliError(UserError):
    """The Kaggle CLI is missing, has no credentials, or one of its commands failed."""


def credentials_source() -> str | None:
    """Where the Kaggle CLI 2.x finds credentials, in its order (token, legacy key, OAuth login),
    or None; only names are returned, a value is never read."""
    env, kaggle_dir = os.environ, Path.home() / ".kaggle"
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        if (kaggle_dir / name).is_file():
            return str(Path("~/.kaggle") / name)
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    config = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    for folder in [*folders, kaggle_dir, config]:
        if (folder / "kaggle.json").is_file():
            return "kaggle.json (legacy)"
    return "kaggle auth login" if (kaggle_dir / "credentials.json").is_file() else None


def kaggle_executable() -> str:
    """The ``kaggle`` command on PATH with credentials; ``KaggleCliError`` saying how to set up."""
    found = shutil.which("kaggle")
    if found is None:
        raise KaggleCliError(f"--push needs the Kaggle CLI: pip install kaggle, then {SETUP}")
    if credentials_source() is None:
        raise KaggleCliError(f"--push: no Kaggle credentials found; {SETUP}")
    return found


def _dataset_args(folder: Path, exists: bool, message: str) -> list[str]:
    """``datasets version`` (existing dataset) or ``datasets create`` (new one) for ``folder``."""
    if exists:
        return ["datasets", "version", "-p", str(folder), "-m", message]
    return ["datasets", "create", "-p", str(folder)]


def _shown(args: Sequence[str]) -> str:
    return shlex.join(["kaggle", *args])


def kernel_help(kernel_id: str) -> str:
    """Where to read a notebook run's log and output, and its page."""
    return (
        f"its log: {_shown(['kernels', 'logs', kernel_id])}; its submission.csv:"
        f" {_shown(['kernels', 'output', kernel_id, '-p', 'kaggle-output'])};"
        f" its page: https://www.kaggle.com/code/{kernel_id}"
    )


def manual_commands(datasets: Sequence[Path], kernel: Path, message: str) -> list[str]:
    """The commands a user runs to push by hand (first upload; ``version`` for later ones)."""
    lines = [_shown(_dataset_args(folder, False, message)) for folder in datasets]
    lines += [f"# later uploads: {_shown(_dataset_args(f, True, message))}" for f in datasets]
    return [*lines, _shown([*KERNEL_PUSH, str(kernel)])]


def push_bundle(
    datasets: dict[str, Path],
    kernel: Path,
    message: str,
    timeout: float = TIMEOUT,
    wait: float = WAIT,
    poll: float = POLL,
) -> None:
    """Create or version (as ``datasets status`` says) each dataset ``{id: folder}``, wait until
    each is ready, push the kernel folder and follow its run until it completes. A command still
    running after ``timeout`` seconds is stopped; waiting over ``wait`` seconds is an error."""
    executable = kaggle_executable()
    print(f"Kaggle credentials: {credentials_source()}")
    for dataset_id, folder in datasets.items():
        exists = _run(executable, ["datasets", "status", dataset_id], timeout, check=False)[0] == 0
        _run(executable, _dataset_args(folder, exists, message), timeout)
    for dataset_id in datasets:
        status = _follow(executable, ["datasets", "status", dataset_id], timeout, wait, poll)
        if status != "ready":
            raise KaggleCliError(f"dataset {dataset_id} is {status!r} on Kaggle: upload it again")
    _run(executable, [*KERNEL_PUSH, str(kernel)], timeout)
    kernel_id = json.loads((kernel / KERNEL_METADATA).read_text(encoding="utf-8"))["id"]
    status = _follow(executable, ["kernels", "status", kernel_id], timeout, wait, poll, kernel_id)
    if status != "complete":
        raise KaggleCliError(
            f"notebook {kernel_id} ended with status {status!r}; {kernel_help(kernel_id)}"
        )
    print(f"notebook {kernel_id} complete; {kernel_help(kernel_id)}")


def _follow(
    executable: str,
    args: list[str],
    timeout: float,
    wait: float,
    poll: float,
    kernel_id: str | None = None,
) -> str:
    """Run the status command ``args`` every ``poll`` seconds until it reports a final status
    (a dataset's with no ``kernel_id``, else that kernel's) and return it."""
    final = ("ready", *DATASET_FAILED) if kernel_id is None else ("complete", *KERNEL_FAILED)
    started = time.monotonic()
    while True:
        output = _run(executable, args, timeout, echo=False)[1]
        found = KERNEL_STATUS.search(output) if kernel_id else None
        last = (output.strip().splitlines() or [""])[-1]  # after any version warning
        status = (found.group(1) if found else last.strip()).lower()
        print(f"{args[-1]}: {status}", flush=True)
        if status in final:
            return status
        waited = time.monotonic() - started
        if waited + poll > wait:
            hint = f"; {kernel_help(kernel_id)}" if kernel_id else ""
            raise KaggleCliError(
                f"`{_shown(args)}` still says {status!r} after {waited:.0f} s (--wait {wait:g})"
                f"{hint}"
            )
        time.sleep(poll)


def _redacted(text: str) -> str:
    """``text`` without the values of the credential variables."""
    for name in SECRETS:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _run(
    executable: str, args: list[str], timeout: float, check: bool = True, echo: bool = True
) -> tuple[int, str]:
    """Run ``kaggle ARGS`` (printing it and its output if ``echo``); its exit code and output,
    or ``KaggleCliError`` naming the command if it fails or prints a refusal."""
    command = _shown(args)
    if echo:
        print(f"$ {command}", flush=True)
    try:
        done = subprocess.run(
            [executable, *args],
            check=False,
            timeout=timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        raise KaggleCliError(
            f"`{command}` did not finish within {timeout:g} s and was stopped;"
            " check the network, or allow more time with --timeout"
        ) from None
    except OSError as exc:
        raise KaggleCliError(f"could not run {executable}: {exc}") from None
    output = _redacted(done.stdout)
    if echo and output.strip():
        print(output.rstrip(), flush=True)
    lines = output.strip().splitlines() or ["no message"]
    if check and done.returncode != 0:
        raise KaggleCliError(f"`{command}` failed (exit {done.returncode}): {lines[-1]}")
    refused = [line for line in lines if REFUSED.search(line)]
    if check and refused:
        raise KaggleCliError(f"`{command}` failed: {refused[0].strip()}")
    return done.returncode, output
