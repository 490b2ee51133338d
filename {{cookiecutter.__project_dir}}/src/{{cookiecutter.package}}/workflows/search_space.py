"""The search space of ``tune``: a YAML file mapping dotted ``fit`` flags to value ranges::

    model.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
    data.batch_size: {type: int, low: 8, high: 64, log: true}
    model.backbone: {type: categorical, choices: [resnet18, mobilenet_v3_small]}

Checked whole before any trial: a mistake (a key given twice too) is one ``DataError`` naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.errors import DataError
from .fit_jobs import yaml

RANGE = {"type", "low", "high", "log", "step"}
FIELDS = {"float": RANGE, "int": RANGE, "categorical": {"type", "choices"}}  # of each type


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping giving a key twice is a ``ValueError``
    (PyYAML keeps the last value without a word); a merge (``<<:``) may still be overridden."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        own = [key for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
        mapping = dict(super().construct_mapping(node, deep=deep))  # refuses unhashable keys
        lines: dict[Any, int] = {}
        for key_node in own:
            key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
            if key in lines:
                at = f"line {line}" if lines[key] == line else f"lines {lines[key]} and {line}"
                raise ValueError(f"{key}: given twice ({at})")
            lines[key] = line
        return mapping


@dataclass(frozen=True)
class Param:
    """One searched flag: its dotted name and the range a trial draws its value from."""

    name: str
    type: str
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value of this flag for ``trial`` (an ``optuna.Trial``)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        suggest = trial.suggest_int if self.type == "int" else trial.suggest_float
        step = {"step": self.step} if self.step else {}  # suggest_int's default is 1, not None
        return suggest(self.name, self.low, self.high, log=self.log, **step)


def trial_flags(params: dict[str, Any]) -> list[str]:
    """The ``fit`` flags that apply a trial's values: ``--model.lr 0.001``, booleans as ``true``."""
    flags: list[str] = []
    for name, value in params.items():
        flags += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def load_search_space(path: str | Path, fit_config: Any) -> list[Param]:
    """The parameters of the search file ``path``, each an option of ``fit_config`` (parsed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: search file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except ValueError as exc:  # a key given twice, or a value PyYAML cannot build (2020-13-45)
        raise DataError(f"{path}: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: expected a mapping of dotted fit flags to ranges")
    return [_param(str(name).lstrip("-"), spec, fit_config, path) for name, spec in raw.items()]


def _param(name: str, spec: Any, fit_config: Any, path: Path) -> Param:
    """One entry of the search file, checked."""

    def fail(problem: str) -> DataError:
        return DataError(f"{path}: {name}: {problem}")

    def number(field: str) -> Any:
        value = spec.get(field)
        if isinstance(value, bool) or not isinstance(value, int if kind == "int" else (int, float)):
            raise fail(f"`{field}` must be {'an integer' if kind == 'int' else 'a number'}")
        if not math.isfinite(value):
            raise fail(f"`{field}` must be a finite number (got {value})")
        return value

    if name not in fit_config:  # a jsonargparse Namespace reads dotted keys
        raise fail("no such fit flag (`fit --print_config` lists them)")
    if not isinstance(spec, dict):
        raise fail("expected a mapping such as {type: float, low: 0.0001, high: 0.01}")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:
        raise fail(f"type {kind!r}: expected one of {', '.join(FIELDS)}")
    unknown = ", ".join(map(str, sorted(set(spec) - FIELDS[kind], key=str)))
    if unknown:
        raise fail(f"unknown field(s) {unknown} for type {kind}; use {sorted(FIELDS[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail("a categorical needs a non-empty list `choices`")
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise fail("choices must be plain values (text, numbers, true/false)")
        if len(set(map(repr, choices))) != len(choices):
            raise fail("choices repeat a value")
        return Param(name, kind, choices=tuple(choices))
    low, high = number("low"), number("high")
    if low >= high:
        raise fail(f"low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail("`log` must be true or false")
    if log and low <= 0:
        raise fail(f"a log range needs low > 0 (got {low})")
    step = None if spec.get("step") is None else number("step")
    if step is not None and step <= 0:
        raise fail(f"`step` must be positive (got {step})")
    if step is not None and log:
        raise fail("`step` and `log: true` cannot be combined")
    return Param(name, kind, low=low, high=high, log=log, step=step)
