"""``manifest.json`` of a weights bundle: which checkpoints, and how ``predict`` used them.

``package`` writes it next to the stripped checkpoints; the offline notebook reads it (through
``offline_predict.predict_with_manifest``) so that it predicts with the same label vocabulary,
image size, batch size, thresholds and TTA as ``predict`` would. ``read_manifest`` validates
every field, so a damaged or hand-edited file is one ``DataError`` naming the field. This module
imports nothing heavy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.errors import DataError

MANIFEST = "manifest.json"
FORMAT = 1
TTA_NAMES = ("none", "hflip", "flips")


@dataclass(frozen=True)
class Manifest:
    """The inference settings of a bundle; ``checkpoints`` are absolute paths."""

    checkpoints: list[Path]
    classes: list[str]
    image_size: int
    batch_size: int
    threshold: float | list[float]
    tta: str


def manifest_dict(
    checkpoint_names: list[str],
    classes: list[str],
    image_size: int,
    batch_size: int,
    threshold: float | list[float],
    tta: str,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """The JSON content of a manifest; ``provenance`` says where the settings came from."""
    return {
        "format": FORMAT,
        "checkpoints": checkpoint_names,
        "classes": classes,
        "image_size": image_size,
        "batch_size": batch_size,
        "threshold": threshold,
        "tta": tta,
        **provenance,
    }


def read_manifest(path: str | Path) -> Manifest:
    """The settings of the manifest at ``path``; ``DataError`` naming the file and the field."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as bad:
        raise DataError(f"{source}: not a readable manifest ({bad})") from None
    try:
        return _parse(data, source.parent)
    except DataError as bad:
        raise DataError(f"{source}: {bad}") from None


def _parse(data: Any, folder: Path) -> Manifest:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"not a manifest of format {FORMAT}")
    names = _field(data, "checkpoints", list)
    if not names or not all(isinstance(name, str) for name in names):
        raise DataError("'checkpoints' must list one checkpoint file name or more")
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(f"checkpoint {missing[0]} is missing next to the manifest")
    classes = _field(data, "classes", list)
    if not classes or not all(isinstance(name, str) for name in classes):
        raise DataError("'classes' must list the label names")
    tta = _field(data, "tta", str)
    if tta not in TTA_NAMES:
        raise DataError(f"'tta' must be one of {', '.join(TTA_NAMES)}, got {tta!r}")
    return Manifest(
        checkpoints=[folder / name for name in names],
        classes=list(classes),
        image_size=_positive_int(data, "image_size"),
        batch_size=_positive_int(data, "batch_size"),
        threshold=_threshold(data.get("threshold"), len(classes)),
        tta=tta,
    )


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    if not isinstance(data.get(name), kind):
        raise DataError(f"field {name!r} is missing or not a {kind.__name__}")
    return data[name]


def _positive_int(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"field {name!r} must be a positive whole number, got {value!r}")
    return value


def _threshold(value: Any, n_classes: int) -> float | list[float]:
    def valid(number: Any) -> bool:
        return (
            isinstance(number, (int, float)) and not isinstance(number, bool) and 0 <= number <= 1
        )

    if valid(value):
        return float(value)
    if isinstance(value, list) and len(value) == n_classes and all(map(valid, value)):
        return [float(number) for number in value]
    raise DataError(
        f"field 'threshold' must be a number in [0, 1] or {n_classes} of them, got {value!r}"
    )
