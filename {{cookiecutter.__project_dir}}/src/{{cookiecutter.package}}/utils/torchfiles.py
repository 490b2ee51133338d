"""Write ``torch.save`` files whole, and load them safely: tensors and plain data only, never code.
Writes go through a Python file object, so ``atomic_write`` names a full disk (torch would not)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import DataError, UserError
from .stop_signals import not_interrupted


def save_torch_file(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path``, whole or not at all; a stop signal waits for the end."""
    with not_interrupted(), atomic_write(path) as tmp, tmp.open("wb") as handle:
        torch.save(obj, handle)


def load_torch_file(
    path: str | Path, what: str, error: type[UserError] = DataError, remedy: str = ""
) -> Any:
    """``torch.load`` a local file with ``weights_only=True`` or raise ``error`` naming it;
    ``remedy`` ends the message of a file that exists but cannot be loaded."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise error(f"{file}: {what} file not found")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or hostile file
        raise error(
            f"{file}: not a readable {what} (loaded with weights_only=True: tensors and plain"
            f" data only): {refusal_reason(exc)}{'; ' + remedy if remedy else ''}"
        ) from None


def refusal_reason(exc: BaseException) -> str:
    """One line saying why ``exc`` happened, without torch's advice to load unsafely."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        # torch's paragraphs suggest weights_only=False; keep the line saying what was refused
        advice = ("Weights only load failed", "(1)", "(2)", "Check the documentation", "Please")
        lines = [
            line.removeprefix("WeightsUnpickler error: ").split(" Please use")[0]
            for line in lines
            if not line.startswith(advice)
        ]
    first_sentence = lines[0].split(". ")[0].rstrip(".") if lines else "no detail"
    return f"{type(exc).__name__}: {first_sentence}"
