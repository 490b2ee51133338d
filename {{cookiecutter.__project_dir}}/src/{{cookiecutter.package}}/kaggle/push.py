"""The Kaggle side of a bundle: its ids, the metadata of its datasets (or of the weights' Kaggle
Model), the upload with the Kaggle CLI, waiting until each upload is ready and following the
notebook's run. Credentials are only checked for presence; their values are blanked out of any
output echoed."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..utils.atomic import write_json
from ..utils.errors import DataError, UserError

PROJECT = "{{ cookiecutter.project }}"
COMPETITION = "{{ cookiecutter.competition }}"
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,48}[a-z0-9])")
BASE_SLUG = re.sub(r"[^a-z0-9]+", "-", PROJECT.lower()).strip("-")[:38].strip("-")
USER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,48}[A-Za-z0-9])?")
# How the weights reach the notebook: a dataset, or a Kaggle Model (``model_sources``).
DATASET, MODEL = "dataset", "model"
CARRIERS = (DATASET, MODEL)
# The weights' model variation is ``owner/model/FRAMEWORK/VARIATION``; the Kaggle CLI writes the
# framework in lower case (``short_enum_name``) and Kaggle mounts it so.
FRAMEWORK, VARIATION = "pytorch", "default"
FIRST_VERSION = 1  # of a new model variation; --push writes the version it uploaded
DATASET_METADATA = "dataset-metadata.json"
MODEL_METADATA = "model-metadata.json"
INSTANCE_METADATA = "model-instance-metadata.json"
# Kaggle's name (docs/models_metadata.md) of the project's license, which a model variation needs;
# the most restrictive one when the project has none.
MODEL_LICENSE = {"MIT": "MIT", "BSD-3-Clause": "BSD-3-Clause", "Apache-2.0": "Apache 2.0"}.get(
    "{{ cookiecutter.license }}",
    "Attribution-NonCommercial-NoDerivatives 4.0 International (CC BY-NC-ND 4.0)",
)


class Ids(NamedTuple):
    """The Kaggle ids (``user/slug``) of the code dataset, the weights (a dataset, or a model
    variation ``user/slug/framework/variation``) and the notebook, and the competition."""

    code: str
    weights: str
    kernel: str
    competition: str


def check_ids(user: str, competition: str, weights_as: str = DATASET) -> Ids:
    """``Ids`` of a valid Kaggle user name and competition slug, else ``DataError`` naming it;
    ``weights_as`` is one of ``CARRIERS``."""
    if not USER.fullmatch(user):
        raise DataError(f"--user {user!r}: not a Kaggle user name (letters, digits, - and _)")
    if not SLUG.fullmatch(competition):
        raise DataError(
            f"--competition {competition!r}: not a Kaggle slug (3-50 lowercase letters, digits"
            " and -, as in kaggle.com/competitions/<slug>)"
        )
    slug = f"{user}/{BASE_SLUG}"
    weights = f"{slug}-weights" + (f"/{FRAMEWORK}/{VARIATION}" if weights_as == MODEL else "")
    return Ids(f"{slug}-code", weights, f"{slug}-submission", competition)


def is_model(source: str) -> bool:
    """Whether a notebook input id is a Kaggle model variation (else a dataset)."""
    return source.count("/") == 3


def dataset_metadata(dataset_id: str, what: str) -> dict[str, Any]:
    """``dataset-metadata.json`` of a private dataset (``kaggle datasets create|version``)."""
    return {
        "title": dataset_id.split("/")[1][:50],
        "id": dataset_id,
        "licenses": [{"name": "other"}],
        "subtitle": f"{what} for the {PROJECT} submission notebook"[:80],
    }


def weights_metadata(weights_id: str) -> dict[str, dict[str, Any]]:
    """The metadata files of the weights folder, ``{file name: content}``: a dataset's, or those
    of a private model and its variation (``kaggle models create``, ``models variations create``;
    Kaggle CLI docs/models_metadata.md)."""
    if not is_model(weights_id):
        return {DATASET_METADATA: dataset_metadata(weights_id, "model weights")}
    owner, model, framework, variation = weights_id.split("/")
    about = f"Weights for the {PROJECT} submission notebook"
    usage = "`manifest.json` lists the checkpoints and the settings of `predict`."
    return {
        MODEL_METADATA: {
            "ownerSlug": owner,
            "slug": model,
            "title": model[:50],
            "subtitle": about[:80],
            "isPrivate": True,
            "description": f"# {model}\n\n{about}. {usage}\n",
        },
        INSTANCE_METADATA: {
            "ownerSlug": owner,
            "modelSlug": model,
            "instanceSlug": variation,
            "framework": framework,
            "overview": about,
            "usage": usage,
            "licenseName": MODEL_LICENSE,
            "fineTunable": False,
            "trainingData": [],
            "modelInstanceType": "Unspecified",
        },
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


def kaggle_executable(what: str = "--push") -> str:
    """The ``kaggle`` command on PATH with credentials; ``KaggleCliError`` saying how to set up
    (``what`` names the option or command that needs it)."""
    found = shutil.which("kaggle")
    if found is None:
        raise KaggleCliError(f"{what} needs the Kaggle CLI: pip install kaggle, then {SETUP}")
    if credentials_source() is None:
        raise KaggleCliError(f"{what}: no Kaggle credentials found; {SETUP}")
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


def _model_args(instance: str, folder: Path, exists: bool, message: str) -> list[str]:
    """``models variations versions create`` (a new version of the model variation
    ``instance``) or ``models variations create`` (the variation and its first version)."""
    if exists:
        command = ["models", "variations", "versions", "create", instance]
        return [*command, "-p", str(folder), "-n", message]
    return ["models", "variations", "create", "-p", str(folder)]


def manual_commands(
    datasets: Sequence[Path], kernel: Path, message: str, model: tuple[str, Path] | None = None
) -> list[str]:
    """The commands a user runs to push by hand (first upload; ``version`` for later ones);
    ``model``: the weights' ``(model variation, folder)``, if they are a Kaggle Model."""
    lines = [_shown(_dataset_args(folder, False, message)) for folder in datasets]
    if model:
        lines.append(_shown(["models", "create", "-p", str(model[1])]))
        lines.append(_shown(_model_args(*model, False, message)))
    lines += [f"# later uploads: {_shown(_dataset_args(f, True, message))}" for f in datasets]
    if model:
        again = _shown(_model_args(*model, True, message))
        lines.append(
            f"# later uploads: {again}; then its version number in"
            f" {kernel / KERNEL_METADATA}'s model_sources"
        )
    return [*lines, _shown([*KERNEL_PUSH, str(kernel)])]


def push_bundle(
    datasets: dict[str, Path],
    kernel: Path,
    message: str,
    timeout: float = TIMEOUT,
    wait: float = WAIT,
    poll: float = POLL,
    model: tuple[str, Path] | None = None,
) -> None:
    """Create or version (as ``datasets status`` says) each dataset ``{id: folder}``, and the
    weights' ``model`` ``(variation, folder)`` if any; wait until each is ready, write the
    model's new version into the kernel's ``model_sources``, push the kernel folder and follow its
    run until it completes. A command still running after ``timeout`` seconds is stopped;
    waiting over ``wait`` seconds is an error."""
    executable = kaggle_executable()
    print(f"Kaggle credentials: {credentials_source()}")
    for dataset_id, folder in datasets.items():
        code = run_kaggle(executable, ["datasets", "status", dataset_id], timeout, check=False)[0]
        exists = code == 0
        run_kaggle(executable, _dataset_args(folder, exists, message), timeout)
    before = _upload_model(executable, *model, message, timeout) if model else 0
    for dataset_id in datasets:
        status = _follow(executable, ["datasets", "status", dataset_id], timeout, wait, poll)
        if status != "ready":
            raise KaggleCliError(f"dataset {dataset_id} is {status!r} on Kaggle: upload it again")
    if model:
        version = _wait_for_model(executable, *model, before, timeout, wait, poll)
        _pin_model(kernel, model[0], version)
    run_kaggle(executable, [*KERNEL_PUSH, str(kernel)], timeout)
    kernel_id = json.loads((kernel / KERNEL_METADATA).read_text(encoding="utf-8"))["id"]
    status = _follow(executable, ["kernels", "status", kernel_id], timeout, wait, poll, kernel_id)
    if status != "complete":
        raise KaggleCliError(
            f"notebook {kernel_id} ended with status {status!r}; {kernel_help(kernel_id)}"
        )
    print(f"notebook {kernel_id} complete; {kernel_help(kernel_id)}")


def _metadata(
    executable: str, args: list[str], name: str, timeout: float, check: bool = True
) -> dict[str, Any] | None:
    """The metadata file ``name`` that ``kaggle ARGS -p FOLDER`` writes (``models get``,
    ``models variations get``), or None when the command fails and not ``check``."""
    with tempfile.TemporaryDirectory(prefix="kaggle-") as folder:
        code, output = run_kaggle(executable, [*args, "-p", folder], timeout, check, echo=False)
        path = Path(folder) / name
        if code != 0 and not check:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            last = (output.strip().splitlines() or ["no message"])[-1]
            raise KaggleCliError(f"`{_shown(args)}` wrote no readable {name}: {last}") from None
    if not isinstance(data, dict):
        raise KaggleCliError(f"`{_shown(args)}` wrote a {name} that is not a JSON object")
    return data


def _model_version(
    executable: str, instance: str, timeout: float, check: bool = True
) -> int | None:
    """The current version number of the model variation ``instance`` (``versionNumber`` of the
    metadata ``models variations get`` writes), or None if it does not exist and not ``check``."""
    args = ["models", "variations", "get", instance]
    data = _metadata(executable, args, INSTANCE_METADATA, timeout, check)
    if data is None:
        return None
    version = data.get("versionNumber")
    if not isinstance(version, int) or isinstance(version, bool):
        raise KaggleCliError(f"`{_shown(args)}` gave no version number: {version!r}")
    return version


def _upload_model(
    executable: str, instance: str, folder: Path, message: str, timeout: float
) -> int:
    """Upload ``folder`` as a new version of the model variation ``instance``, creating the model
    and the variation when missing; the variation's version number before (0: it was new)."""
    before = _model_version(executable, instance, timeout, check=False)
    if before is None:
        model = instance.rsplit("/", 2)[0]
        if _metadata(executable, ["models", "get", model], MODEL_METADATA, timeout, False) is None:
            run_kaggle(executable, ["models", "create", "-p", str(folder)], timeout)
    run_kaggle(executable, _model_args(instance, folder, before is not None, message), timeout)
    return before or 0


def _wait_for_model(
    executable: str,
    instance: str,
    folder: Path,
    before: int,
    timeout: float,
    wait: float,
    poll: float,
) -> int:
    """The number of the version uploaded after ``before``, once Kaggle lists every file of
    ``folder`` in it (the CLI has no status of a model version)."""
    names = {p.name for p in folder.iterdir() if p.name not in (MODEL_METADATA, INSTANCE_METADATA)}
    version = before

    def status() -> str:
        nonlocal version
        version = _model_version(executable, instance, timeout) or 0
        if version <= before:
            return "no new version yet"
        files = ["models", "variations", "versions", "files", f"{instance}/{version}"]
        _, listed = run_kaggle(executable, [*files, "--page-size", "200"], timeout, False, False)
        missing = [name for name in sorted(names) if name not in listed.split()]
        return f"version {version}: {len(missing)} files not listed yet" if missing else "ready"

    label = f"`{_shown(['models', 'variations', 'get', instance])}`"
    _poll(instance, status, ("ready",), wait, poll, label)
    return version


def _pin_model(kernel: Path, instance: str, version: int) -> None:
    """Write ``instance/version`` as the kernel's only ``model_sources`` entry."""
    path = kernel / KERNEL_METADATA
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["model_sources"] = [f"{instance}/{version}"]
    write_json(path, metadata)
    print(f"{path}: model_sources {instance}/{version}", flush=True)


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

    def status() -> str:
        output = run_kaggle(executable, args, timeout, echo=False)[1]
        found = KERNEL_STATUS.search(output) if kernel_id else None
        last = (output.strip().splitlines() or [""])[-1]  # after any version warning
        return (found.group(1) if found else last.strip()).lower()

    hint = f"; {kernel_help(kernel_id)}" if kernel_id else ""
    return _poll(args[-1], status, final, wait, poll, f"`{_shown(args)}`", hint)


def _poll(
    name: str,
    status: Callable[[], str],
    final: Sequence[str],
    wait: float,
    poll: float,
    label: str,
    hint: str = "",
) -> str:
    """Ask ``status()`` every ``poll`` seconds, printing ``name: status``, until it is one of
    ``final`` and return it; ``KaggleCliError`` (``label`` still says ...) after ``wait`` s."""
    started = time.monotonic()
    while True:
        now = status()
        print(f"{name}: {now}", flush=True)
        if now in final:
            return now
        waited = time.monotonic() - started
        if waited + poll > wait:
            raise KaggleCliError(
                f"{label} still says {now!r} after {waited:.0f} s (--wait {wait:g}){hint}"
            )
        time.sleep(poll)


def _redacted(text: str) -> str:
    """``text`` without the values of the credential variables."""
    for name in SECRETS:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def run_kaggle(
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
