"""Value constraints of the command-line options, declared in the signatures that define them.

The model's and the data module's ``__init__`` annotate each number with one of these types, so
the command line refuses a bad value before any object is built and ``--help`` names the rule
(``type: PositiveFloat``). From Python the types are plain numbers; ``check_range`` applies the
same rule to a value passed directly, and ``plain`` turns a parsed value back into a built-in
``int`` / ``float`` so checkpoints hold only plain data.
"""

from __future__ import annotations

from typing import Any

from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    restricted_number_type,
)

from .errors import DataError

__all__ = [
    "ClosedUnitInterval",
    "DropoutRate",
    "ImageSide",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Seed",
    "ValFraction",
    "check_range",
    "plain",
]

DropoutRate = restricted_number_type("DropoutRate", float, [(">=", 0), ("<", 1)], join="and")
"""A probability in [0, 1): 1 would zero every feature."""

ValFraction = restricted_number_type("ValFraction", float, [(">", 0), ("<=", 0.5)], join="and")
"""Share of images held out for validation, in (0, 0.5]."""

ImageSide = restricted_number_type("ImageSide", int, [(">=", 16), ("<=", 4096)], join="and")
"""Side of the square model input in pixels, 16 to 4096."""

Seed = restricted_number_type("Seed", int, [(">=", 0), ("<=", 2**32 - 1)], join="and")
"""A random seed numpy and scikit-learn accept: 0 to 2**32 - 1."""


def plain(value: Any) -> Any:
    """A parsed constrained number as a built-in ``int``/``float`` (lists element-wise)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def check_range(name: str, value: Any, constraint: type) -> Any:
    """``value`` as a plain number if ``constraint`` accepts it, else ``DataError`` naming ``name``.

    The command line already enforced the constraint; this gives Python callers the same rule.
    """
    if value is None:
        return None
    try:
        return plain(constraint(value))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}={value!r}: {exc}") from None
