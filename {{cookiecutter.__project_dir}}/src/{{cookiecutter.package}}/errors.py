"""The exception types for bad user input: the CLI prints them as one line, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class DataError(ValueError):
    """Input data (a folder, CSV row, image or checkpoint) is unusable; the message names it."""


def load_torch_file(path: str | Path, what: str, error: type[ValueError] = DataError) -> Any:
    """``torch.load`` a local file (tensors and plain data only) or raise ``error`` naming it."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise error(f"{file}: {what} file not found")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise error(f"{file}: not a readable {what} ({type(exc).__name__}: {exc})") from None
