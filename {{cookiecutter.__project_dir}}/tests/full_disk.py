"""A full disk, simulated in-process: writes under one folder fail the way the kernel fails them.

``fill_disk(monkeypatch, folder)``: from then on a file opened for writing under ``folder`` is
created (as on a real full disk) but its data goes to ``/dev/full``, where every write fails with
``ENOSPC``; Python's ``open`` (used by pathlib, Pillow and matplotlib) and torch's own file writer
(``torch.save`` to a path) are covered, in the calling process only.
"""

import builtins
import io
import os
from pathlib import Path

import pytest

DEV_FULL = Path("/dev/full")
WRITE_MODES = ("w", "a", "x")


def fill_disk(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make every write under ``folder`` fail with ``ENOSPC`` (see the module docstring)."""
    if not DEV_FULL.exists():
        pytest.skip("needs /dev/full (Linux)")
    import torch

    real_open, real_save = builtins.open, torch.save
    root = os.path.abspath(folder)

    def is_full(file: object) -> bool:
        if not isinstance(file, (str, os.PathLike)):
            return False
        path = os.path.abspath(os.fspath(file))
        return os.path.commonpath([path, root]) == root

    def full_open(file, mode="r", *args, **kwargs):
        if is_full(file) and any(letter in mode for letter in WRITE_MODES):
            real_open(file, mode, *args, **kwargs).close()
            return real_open(DEV_FULL, mode.replace("x", "w").replace("a", "w"), *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    def full_save(obj, file, *args, **kwargs):
        if is_full(file):
            Path(file).touch()
            file = DEV_FULL  # torch's writer reports "unexpected pos N vs M"
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)
    monkeypatch.setattr(torch, "save", full_save)
