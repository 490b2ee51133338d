"""The errors a user can fix, which the CLI prints as one ``error:`` line. Imports nothing heavy."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the kernel's refusals of a write: disk, quota


class UserError(Exception):
    """Base of every error the user can fix; its message names what is wrong and where."""


class DataError(UserError, ValueError):
    """Input data (a folder, CSV row, image, checkpoint or option value) is unusable."""


class BackboneError(UserError, ValueError):
    """The backbone name, module or weights cannot be used; the message says what to do."""


class DiskFullError(UserError):
    """A file could not be written because its disk (or the user's quota) is full."""


def disk_full(path: str | os.PathLike | None, exc: OSError) -> DiskFullError:
    """The one-line error for ``exc``, a full disk met while writing ``path``."""
    where = f"{os.fspath(path)}: cannot write it" if path is not None else "cannot write a file"
    return DiskFullError(
        f"{where}, the disk is full ({exc.strerror}); free some space and run the command again"
    )


def disk_full_error(exc: BaseException) -> DiskFullError | None:
    """The full-disk error behind ``exc`` (itself, its cause or context), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFullError):
            return seen
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return disk_full(exc.filename, exc)
    return None


@contextlib.contextmanager
def full_disk_named(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk (or quota) met while writing ``path`` into ``disk_full(path)``."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise disk_full(path, exc) from None
