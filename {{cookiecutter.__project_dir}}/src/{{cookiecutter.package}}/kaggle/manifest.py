"""``manifest.json`` of a weights bundle: its checkpoints and the settings ``predict`` used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..predict.tta import TTA_NAMES
from ..utils.errors import DataError
from ..utils.jsonfile import field, read_json

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """The inference settings of a bundle; ``checkpoints`` are paths next to the manifest."""

    checkpoints: list[Path]
    classes: list[str]
    image_size: int
    batch_size: int
    threshold: float | list[float]
    tta: str
    weights: list[float] | None = None  # one per checkpoint (a blend's); None: equal


def read_manifest(path: str | Path) -> Manifest:
    """The settings of the manifest at ``path``; ``DataError`` naming the file and the field."""
    return read_json(path, lambda data: _parse(data, Path(path).parent), "bundle manifest")


def _parse(data: Any, folder: Path) -> Manifest:
    if field(data, "format", int) != FORMAT:
        raise DataError(f"not a manifest of format {FORMAT}")
    names = _names(data, "checkpoints")
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(f"checkpoint {missing[0]} is missing next to the manifest")
    classes = _names(data, "classes")
    tta = field(data, "tta", str)
    if tta not in TTA_NAMES:
        raise DataError(f"'tta' must be one of {', '.join(TTA_NAMES)}, got {tta!r}")
    return Manifest(
        checkpoints=[folder / name for name in names],
        classes=classes,
        image_size=field(data, "image_size", int, minimum=1),
        batch_size=field(data, "batch_size", int, minimum=1),
        threshold=_threshold(data, len(classes)),
        tta=tta,
        weights=_weights(data, len(names)),
    )


def _weights(data: dict[str, Any], n_checkpoints: int) -> list[float] | None:
    """The optional blend weights: one number of 0 or more per checkpoint, not all zero."""
    if data.get("weights") is None:
        return None
    values = field(data, "weights", list)
    numbers = [field({"weights": v}, "weights", float) for v in values]
    if len(numbers) != n_checkpoints or min(numbers) < 0 or sum(numbers) <= 0:
        raise DataError(
            f"'weights' must be {n_checkpoints} numbers of 0 or more, not all zero, got {values!r}"
        )
    return numbers


def _names(data: dict[str, Any], name: str) -> list[str]:
    """The non-empty list of names (checkpoint files, classes) in the field ``name``."""
    names = field(data, name, list)
    if not names or not all(isinstance(item, str) for item in names):
        raise DataError(f"{name!r} must list one name or more, got {names!r}")
    return list(names)


def _threshold(data: dict[str, Any], n_classes: int) -> float | list[float]:
    """One threshold in [0, 1], or one per class."""
    value = data.get("threshold")
    many = isinstance(value, list)
    values: list[Any] = value if isinstance(value, list) else [value]
    numbers = [field({"threshold": v}, "threshold", float) for v in values]
    if (many and len(numbers) != n_classes) or not all(0 <= t <= 1 for t in numbers):
        raise DataError(
            f"'threshold' must be a number in [0, 1] or {n_classes} of them, got {value!r}"
        )
    return numbers if many else numbers[0]
