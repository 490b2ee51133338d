"""Where ``package`` writes: the checks on ``OUT_DIR`` and the staged move into place.

``package`` never deletes what it did not make. ``check_target`` refuses, before anything is
built, an ``OUT_DIR`` that is (or contains) the working directory, the project, the home folder
or the checkpoint/cv folder being packaged, and with ``--force`` it replaces only a folder that
is recognisably an earlier bundle (``BUNDLE_FILES``: the files ``package`` writes, nothing else).
``staging_folder`` creates the hidden build folder next to ``OUT_DIR``, first removing the
partial folders of the same target that a killed run left behind; ``move_into_place`` swaps the
finished build in with renames.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..utils.atomic import current_umask
from .manifest import MANIFEST
from ..utils.errors import DataError

# What package writes into each part of a bundle; --force replaces a folder holding only these.
BUNDLE_FILES = {
    "code": ("*.whl", "dataset-metadata.json"),
    "weights": ("*.ckpt", MANIFEST, "dataset-metadata.json"),
    "kernel": ("inference.ipynb", "kernel-metadata.json"),
}


def check_target(out: Path, protected: dict[str, Path], force: bool) -> Path:
    """The absolute ``OUT_DIR``, or a ``DataError`` if ``package`` may not write or replace it.

    ``protected`` names the folders (and files) that must survive, e.g. ``{"the project": root}``:
    ``OUT_DIR`` may be none of them and hold none of them.
    """
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


def staging_folder(target: Path) -> Path:
    """A new build folder next to ``target`` with ordinary permissions; stale ones removed."""
    remove_stale(target)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent)
    )
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it private (0700)
    return staging


def remove_stale(target: Path) -> list[Path]:
    """Remove the build folders of ``target`` whose process has ended (killed runs)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(partial-(\d+)-.+|old)")
    removed = []
    for entry in target.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        if not found or not entry.is_dir() or entry.is_symlink():
            continue
        if found.group(2) and process_alive(int(found.group(2))):
            continue  # another package run is building it right now
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def move_into_place(staging: Path, target: Path) -> None:
    """Replace ``target`` (absent, empty, or a checked earlier bundle) by ``staging``."""
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
