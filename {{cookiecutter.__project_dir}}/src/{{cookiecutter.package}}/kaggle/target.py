"""Where ``package`` writes: never over what it did not make, and whole (``staged_folder``, which
``sample-data`` uses too)."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..utils.atomic import current_umask
from .manifest import MANIFEST
from .notebook import NOTEBOOK
from .push import DATASET_METADATA, INSTANCE_METADATA, KERNEL_METADATA, MODEL_METADATA
from ..utils.errors import DataError

# What package writes into each part of a bundle; --force replaces a folder holding only these.
BUNDLE_FILES = {
    "code": ("*.whl", DATASET_METADATA),
    "weights": ("*.ckpt", MANIFEST, DATASET_METADATA, MODEL_METADATA, INSTANCE_METADATA),
    "kernel": (NOTEBOOK, KERNEL_METADATA),
}


def check_target(out: Path, protected: dict[str, Path], force: bool) -> Path:
    """The absolute ``OUT_DIR``; ``DataError`` if it is or holds a ``protected`` folder
    (``{"the project": root}``), or is not new, empty or (with ``force``) an earlier bundle."""
    target = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    for what, path in protected.items():
        kept = Path(os.path.abspath(path))
        if target == kept or target in kept.parents:
            raise DataError(
                f"{out}: OUT_DIR would replace {what} ({kept}); choose a new folder for the bundle"
            )
    if target.is_dir() and any(target.iterdir()):
        if not force:
            raise DataError(f"{out}: folder is not empty; choose a new OUT_DIR or pass --force")
        foreign = foreign_entry(target)
        if foreign:
            raise DataError(
                f"{out}: --force replaces only an earlier bundle of package, and this folder is"
                f" not one ({foreign}); choose a new OUT_DIR, or empty it yourself"
            )
    if not target.parent.is_dir():
        raise DataError(f"{target.parent}: folder not found (the parent of OUT_DIR must exist)")
    return target


def foreign_entry(folder: Path) -> str | None:
    """What shows that ``folder`` is not a bundle ``package`` wrote (``None``: it is one)."""
    for entry in sorted(folder.iterdir()):
        patterns = BUNDLE_FILES.get(entry.name)
        if patterns is None or entry.is_symlink() or not entry.is_dir():
            return f"{entry.name}, which package does not write"
        for item in sorted(entry.iterdir()):
            known = any(fnmatch.fnmatch(item.name, pattern) for pattern in patterns)
            if not known or item.is_symlink() or not item.is_file():
                return f"{entry.name}/{item.name}, which package does not write"
    if not (folder / "weights" / MANIFEST).is_file():
        return f"no weights/{MANIFEST}"
    return None


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield a new folder beside ``target`` (absent, empty or a checked earlier bundle) and swap it
    in when the block succeeds; a failed build, and those of killed runs, are removed."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(partial-(\d+)-.+|old)")
    for entry in target.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        if found and entry.is_dir() and not entry.is_symlink():
            if not (found.group(2) and _process_alive(int(found.group(2)))):
                shutil.rmtree(entry, ignore_errors=True)
    prefix = f".{target.name}.partial-{os.getpid()}-"
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it private (0700)
        yield staging
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (another run building it now)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True
