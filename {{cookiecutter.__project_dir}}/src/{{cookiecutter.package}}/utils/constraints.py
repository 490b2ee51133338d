"""Value constraints of the options, declared in their signatures: the command line refuses a bad
value and ``--help`` names the rule; ``check_declared_ranges`` applies them to Python callers."""

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

OPERATORS = {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}  # in the module ``operator``


def plain_restricted_number_type(name: str, base_type: type, restrictions: list[tuple]) -> Any:
    """jsonargparse's ``restricted_number_type`` where it is missing (offline Kaggle inference)."""
    rule = " and ".join(f"v{op}{bound}" for op, bound in restrictions)

    def new(cls: type, value: Any) -> Any:
        number = base_type.__new__(cls, value)
        if not all(getattr(operator, OPERATORS[op])(number, bound) for op, bound in restrictions):
            raise ValueError(f"{value!r} does not conform to restriction {rule}")
        return number

    return type(name, (base_type,), {"__new__": new})


try:
    from jsonargparse.typing import restricted_number_type
except ImportError:  # only training and the command line need jsonargparse
    restricted_number_type = plain_restricted_number_type  # type: ignore[assignment]

# jsonargparse returns its own PositiveInt, NonNegativeInt and ClosedUnitInterval for these.
PositiveInt = restricted_number_type("PositiveInt", int, [(">", 0)])
NonNegativeInt = restricted_number_type("NonNegativeInt", int, [(">=", 0)])
ClosedUnitInterval = restricted_number_type("ClosedUnitInterval", float, [(">=", 0), ("<=", 1)])
OpenUnitInterval = restricted_number_type("OpenUnitInterval", float, [(">", 0), ("<", 1)])
# Finite: an infinite rate or weight turns every weight into NaN.
PositiveFinite = restricted_number_type("PositiveFinite", float, [(">", 0), ("<", math.inf)])
NonNegativeFinite = restricted_number_type("NonNegativeFinite", float, [(">=", 0), ("<", math.inf)])
# Below 1: a dropout of 1 zeroes every feature, a smoothing of 1 makes every target 0.5.
HalfOpenUnitInterval = restricted_number_type("HalfOpenUnitInterval", float, [(">=", 0), ("<", 1)])
ValFraction = restricted_number_type("ValFraction", float, [(">", 0), ("<=", 0.5)])
ImageSide = restricted_number_type("ImageSide", int, [(">=", 16), ("<=", 4096)])
# Of a 64-bit perceptual hash: unrelated pictures differ in about 32 bits.
DuplicateDistance = restricted_number_type("DuplicateDistance", int, [(">=", 0), ("<=", 16)])
Seed = restricted_number_type("Seed", int, [(">=", 0), ("<=", 2**32 - 1)])  # numpy's range

P = ParamSpec("P")


def check_range(name: str, value: Any, constraint: type) -> int | float:
    """``value`` as a built-in number if ``constraint`` accepts it, else ``DataError`` naming it."""
    try:
        number = constraint(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}={value!r}: {exc}") from None
    return int(number) if isinstance(number, int) else float(number)


def check_declared_ranges(init: Callable[P, None]) -> Callable[P, None]:
    """Decorate an ``__init__``: arguments annotated ``X``, ``X | None`` or ``list[X]`` (``X`` a
    constraint) are checked by ``check_range`` and made plain before it runs."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked(*args: P.args, **kwargs: P.kwargs) -> None:
        bound = signature.bind(*args, **kwargs)
        for name, (constraint, each) in _declared_constraints(init).items():
            value = bound.arguments.get(name)
            if each and value is not None:
                bound.arguments[name] = [check_range(name, item, constraint) for item in value]
            elif value is not None:
                bound.arguments[name] = check_range(name, value, constraint)
        init(*bound.args, **bound.kwargs)

    return checked


@functools.cache
def _declared_constraints(function: Callable[..., Any]) -> dict[str, tuple[type, bool]]:
    """Each argument's constraint (a proper subclass of ``int`` or ``float``), and if per item."""
    found = {}
    for name, hint in typing.get_type_hints(function).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        for option in typing.get_args(hint) if union else (hint,):
            each = typing.get_origin(option) is list
            constraint = typing.get_args(option)[0] if each else option
            if isinstance(constraint, type) and constraint not in (int, float, bool):
                if issubclass(constraint, (int, float)):
                    found[name] = (constraint, each)
    return found
