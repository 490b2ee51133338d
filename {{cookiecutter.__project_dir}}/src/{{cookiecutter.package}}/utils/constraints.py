"""Value constraints of the command-line options, declared in the signatures that define them.

The model's and the data module's ``__init__`` annotate each number with one of these types, so
the command line refuses a bad value before any object is built and ``--help`` names the rule
(``type: PositiveFloat``). From Python the types are plain numbers: ``check_declared_ranges``
makes an ``__init__`` apply the rules of its own annotations to the values it is given
(``check_range`` checks one value), and ``plain`` turns a parsed value back into a built-in
``int`` / ``float`` so checkpoints hold only plain data.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, ParamSpec

from .errors import DataError

RULES: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def plain_restricted_number_type(
    name: str | None,
    base_type: type,
    restrictions: tuple[Any, ...] | list[tuple[Any, ...]],
    join: str = "and",
    docstring: str | None = None,
) -> Any:
    """A ``base_type`` subclass whose constructor refuses values outside ``restrictions``.

    The stand-in for jsonargparse's ``restricted_number_type`` where jsonargparse is missing
    (the offline inference path, e.g. a Kaggle notebook): Python callers get the same rules.
    """
    rule = f" {join} ".join(f"v{op}{bound}" for op, bound in restrictions)
    combine = all if join == "and" else any

    def new(cls: type, value: Any) -> Any:
        number = base_type.__new__(cls, value)
        if not combine(RULES[op](number, bound) for op, bound in restrictions):
            raise ValueError(f"{value!r} does not conform to restriction {rule}")
        return number

    return type(name or base_type.__name__, (base_type,), {"__new__": new, "__doc__": docstring})


try:
    from jsonargparse.typing import (
        ClosedUnitInterval,
        NonNegativeFloat,
        NonNegativeInt,
        PositiveFloat,
        PositiveInt,
        restricted_number_type,
    )
except ImportError:  # only training and the command line need jsonargparse
    restricted_number_type = plain_restricted_number_type
    PositiveInt = restricted_number_type("PositiveInt", int, [(">", 0)])
    NonNegativeInt = restricted_number_type("NonNegativeInt", int, [(">=", 0)])
    PositiveFloat = restricted_number_type("PositiveFloat", float, [(">", 0)])
    NonNegativeFloat = restricted_number_type("NonNegativeFloat", float, [(">=", 0)])
    ClosedUnitInterval = restricted_number_type("ClosedUnitInterval", float, [(">=", 0), ("<=", 1)])

__all__ = [
    "ClosedUnitInterval",
    "DropoutRate",
    "ImageSide",
    "NonNegativeFinite",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFinite",
    "PositiveFloat",
    "PositiveInt",
    "Seed",
    "ValFraction",
    "check_declared_ranges",
    "check_range",
    "plain",
]

PositiveFinite = restricted_number_type(
    "PositiveFinite", float, [(">", 0), ("<", math.inf)], join="and"
)
"""A float above 0 and not infinite (an infinite rate or weight turns every weight into NaN)."""

NonNegativeFinite = restricted_number_type(
    "NonNegativeFinite", float, [(">=", 0), ("<", math.inf)], join="and"
)
"""A float of at least 0 and not infinite."""

DropoutRate = restricted_number_type("DropoutRate", float, [(">=", 0), ("<", 1)], join="and")
"""A probability in [0, 1): 1 would zero every feature."""

ValFraction = restricted_number_type("ValFraction", float, [(">", 0), ("<=", 0.5)], join="and")
"""Share of images held out for validation, in (0, 0.5]."""

ImageSide = restricted_number_type("ImageSide", int, [(">=", 16), ("<=", 4096)], join="and")
"""Side of the square model input in pixels, 16 to 4096."""

Seed = restricted_number_type("Seed", int, [(">=", 0), ("<=", 2**32 - 1)], join="and")
"""A random seed numpy and scikit-learn accept: 0 to 2**32 - 1."""

P = ParamSpec("P")


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


def check_declared_ranges(init: Callable[P, None]) -> Callable[P, None]:
    """Decorate an ``__init__`` so that each argument annotated with a constraint (``X``,
    ``X | None`` or ``list[X]``) is checked by ``check_range`` and made plain before it runs.

    The signature stays the one place that says which rule applies to which argument; the body,
    and ``save_hyperparameters`` (which reads the arguments), see plain numbers in range.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked(*args: P.args, **kwargs: P.kwargs) -> None:
        bound = signature.bind(*args, **kwargs)
        for name, (constraint, each) in _declared_constraints(init).items():
            value = bound.arguments.get(name)
            if each and value is not None:
                bound.arguments[name] = [check_range(name, item, constraint) for item in value]
            elif name in bound.arguments:
                bound.arguments[name] = check_range(name, value, constraint)
        init(*bound.args, **bound.kwargs)

    return checked


@functools.cache
def _declared_constraints(function: Callable[..., Any]) -> dict[str, tuple[type, bool]]:
    """Each argument of ``function`` annotated with a constraint: the constraint, and whether it
    applies to the items of a list."""
    found = {}
    for name, hint in typing.get_type_hints(function).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        for option in typing.get_args(hint) if union else (hint,):
            each = typing.get_origin(option) is list
            constraint = typing.get_args(option)[0] if each else option
            if _is_constraint(constraint):
                found[name] = (constraint, each)
    return found


def _is_constraint(hint: Any) -> bool:
    """Whether ``hint`` is a restricted number type: a proper subclass of ``int`` or ``float``."""
    return (
        isinstance(hint, type) and issubclass(hint, (int, float)) and hint not in (int, float, bool)
    )
