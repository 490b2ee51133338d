"""Read a JSON file the package wrote, checking its fields: one ``DataError`` if it is bad."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import DataError

T = TypeVar("T")


def read_json(path: str | os.PathLike, parse: Callable[[Any], T], what: str, hint: str = "") -> T:
    """``parse`` of the JSON in ``path``; ``DataError`` "PATH: not a valid WHAT (why)HINT"."""
    source = Path(path)
    try:
        return parse(json.loads(source.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DataError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as bad:  # DataError is a ValueError
        reason = " ".join(str(bad).split())
        raise DataError(f"{source}: not a valid {what} ({reason}){hint}") from None


def field(data: Any, dotted: str, kind: type, minimum: float | None = None) -> Any:
    """The value at ``dotted`` (``"global.threshold"``, or a key holding dots) as ``kind``, at
    least ``minimum``; ``int`` and ``float`` take finite numbers, not bools, ``int`` whole ones."""
    value: Any = data
    keys = [dotted] if isinstance(data, dict) and dotted in data else dotted.split(".")
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise DataError(f"missing field {dotted!r}")
        value = value[key]
    if kind not in (float, int):
        if not isinstance(value, kind):
            raise DataError(f"{dotted!r} must be a {kind.__name__}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{dotted!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataError(f"{dotted!r} must be finite, got {value!r}")
    if kind is int and value != int(value):
        raise DataError(f"{dotted!r} must be a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise DataError(f"{dotted!r} must be at least {minimum}, got {value!r}")
    return kind(value)
