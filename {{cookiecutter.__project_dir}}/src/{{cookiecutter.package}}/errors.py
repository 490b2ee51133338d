"""The exception types for bad user input: the CLI prints them as one line, no traceback.

Every module raises a subclass of ``UserError`` for a mistake the user can fix (a file, a row, an
option value); the command line catches that one type. This module imports nothing heavy, so
importing it never loads torch.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error the user can fix; its message names what is wrong and where."""


class DataError(UserError, ValueError):
    """Input data (a folder, CSV row, image, checkpoint or option value) is unusable."""


class BackboneError(UserError, ValueError):
    """The backbone name, module or weights cannot be used; the message says what to do."""
