"""``thresholds.json`` (``ThresholdReport``: written by ``cv``, read by ``predict``, a damaged
file is one ``DataError`` naming the field) and ``decide_threshold``, the rule of which threshold
a prediction decodes at."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import metrics
from ..utils.atomic import write_json
from ..utils.errors import DataError
from ..utils.jsonfile import field as json_field, read_json
from ..workflows.cv_files import THRESHOLDS

# A class with fewer positive OOF images keeps the global threshold (its own would fit noise).
MIN_POSITIVES = 20
# A tuned class threshold moves from the global one toward its optimum by n / (n + SHRINKAGE).
SHRINKAGE = 20.0
# Per-class thresholds are used only if they beat the global one by more (a smaller OOF gain
# was noise on 18,632 synthetic PP2021-like images; a larger one carried to a fresh draw).
MARGIN = 0.002
THRESHOLD_PRECEDENCE = (  # which threshold a prediction decodes at: the first that exists
    "--model.threshold on the command line",
    f"the {THRESHOLDS} of the cv folder",
    "the checkpoint's model.threshold",
    "the config's model.threshold",
)
# A blend of cv folders (``predict.blend``) decodes at thresholds tuned on its own OOF instead of
# a cv folder's.
BLEND_ORIGIN = "thresholds tuned on the blend's out-of-fold predictions"


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold (or per-class thresholds) to decode at, and which rule chose it."""

    value: float | list[float]
    origin: str

    def log_line(self) -> str:
        """One line for the user saying which threshold is used and why."""
        shown = self.value if isinstance(self.value, float) else [round(t, 4) for t in self.value]
        return f"decision threshold {shown}: {self.origin}"


@dataclass
class ThresholdReport:
    """What tuning found on the pooled OOF, and which thresholds ``predict`` uses; each score is
    ``metrics.score`` (named ``metric``) of the pooled OOF at the thresholds next to it."""

    classes: list[str]
    default_threshold: float
    default_score: float
    global_threshold: float
    global_score: float
    per_class_thresholds: list[float]
    per_class_score: float
    use: str
    n_images: int
    positives: list[int]
    min_positives: int = MIN_POSITIVES
    shrinkage: float = SHRINKAGE
    margin: float = MARGIN
    metric: str = field(default_factory=lambda: metrics.NAME)

    def __post_init__(self) -> None:
        n = len(self.classes)
        thresholds = [self.default_threshold, self.global_threshold, *self.per_class_thresholds]
        if n == 0 or len(set(self.classes)) != n:
            problem = f"classes must be distinct and non-empty, got {self.classes}"
        elif len(self.per_class_thresholds) != n or len(self.positives) != n:
            problem = f"per-class values must number {n}, one per class"
        elif self.use not in ("global", "per_class"):
            problem = f"use must be one of ['global', 'per_class'], got {self.use!r}"
        elif not all(0.0 <= t <= 1.0 for t in thresholds):
            problem = f"thresholds must be within [0, 1], got {thresholds}"
        else:
            return
        raise DataError(f"threshold report: {problem}")

    @property
    def chosen_score(self) -> float:
        """Pooled OOF score of the thresholds ``predict`` uses."""
        return self.per_class_score if self.use == "per_class" else self.global_score

    def thresholds_for_predict(self, classes: Sequence[str] | None = None) -> float | list[float]:
        """The threshold, or per-class thresholds, for a model of ``classes`` (checked)."""
        if classes is not None and list(classes) != self.classes:
            raise DataError(
                f"thresholds were tuned for classes {self.classes}, the model predicts "
                f"{list(classes)}"
            )
        return list(self.per_class_thresholds) if self.use == "per_class" else self.global_threshold

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``_layout``), per-class values keyed by class name."""
        data: dict[str, Any] = {}
        for dotted, name, _, by_class in _layout(self.metric):
            value = getattr(self, name)
            parent, _, last = dotted.rpartition(".")
            place = data.setdefault(parent, {}) if parent else data
            place[last] = dict(zip(self.classes, value)) if by_class else value
        data["kept_global"] = [  # classes with too few positives to tune their own threshold
            c for c, n in zip(self.classes, self.positives) if n < self.min_positives
        ]
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report as indented JSON, atomically; returns the path."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ThresholdReport:
        """Read a report ``save`` wrote; ``DataError`` naming the file and the first bad field."""
        return read_json(path, cls.from_dict, "threshold report")

    @classmethod
    def from_dict(cls, data: Any) -> ThresholdReport:
        """The report ``to_dict`` described (a file without ``metric`` is an f1 one)."""
        if not isinstance(data, dict):
            raise DataError(f"expected a JSON object, got {type(data).__name__}")
        data = {"metric": "f1", **data}  # files written before the metric was named
        classes = [str(c) for c in json_field(data, "classes", list)]
        values: dict[str, Any] = {}
        for key, name, kind, by_class in _layout(json_field(data, "metric", str)):
            raw = json_field(data, key, dict if by_class else kind)
            if by_class and sorted(raw) != sorted(classes):
                raise DataError(f"{key!r} has keys {sorted(raw)}, expected the classes {classes}")
            values[name] = [json_field(raw, c, kind) for c in classes] if by_class else raw
        return cls(**{**values, "classes": classes})


def _layout(metric: str) -> list[tuple[str, str, type, bool]]:
    """Each field's place in ``thresholds.json``: (dotted key, attribute, type, keyed by class)."""
    return [
        ("use", "use", str, False),
        ("metric", "metric", str, False),
        ("classes", "classes", list, False),
        ("default.threshold", "default_threshold", float, False),
        (f"default.{metric}", "default_score", float, False),
        ("global.threshold", "global_threshold", float, False),
        (f"global.{metric}", "global_score", float, False),
        ("per_class.thresholds", "per_class_thresholds", float, True),
        (f"per_class.{metric}", "per_class_score", float, False),
        ("n_images", "n_images", int, False),
        ("positives", "positives", int, True),
        ("min_positives", "min_positives", int, False),
        ("shrinkage", "shrinkage", float, False),
        ("margin", "margin", float, False),
    ]


def decide_threshold(
    classes: Sequence[str],
    config: float,
    *,
    flag: float | None = None,
    cv_folder: str | os.PathLike | None = None,
    checkpoint: float | None = None,
    blend: ThresholdReport | None = None,
) -> ThresholdChoice:
    """The threshold a prediction with a model of ``classes`` decodes at (``THRESHOLD_PRECEDENCE``):
    ``flag`` is ``--model.threshold`` only when typed, ``cv_folder`` the folder predicted with
    (its ``thresholds.json`` if present), ``checkpoint`` the first checkpoint's ``threshold``;
    ``blend``, the tuned thresholds of a blend, takes the place of a cv folder's."""
    if flag is not None:
        return ThresholdChoice(single_threshold(flag), THRESHOLD_PRECEDENCE[0])
    if blend is not None:
        return ThresholdChoice(
            blend.thresholds_for_predict(classes), f"{BLEND_ORIGIN} ({blend.use})"
        )
    if cv_folder is not None and (Path(cv_folder) / THRESHOLDS).is_file():
        report = ThresholdReport.load(Path(cv_folder) / THRESHOLDS)
        value = report.thresholds_for_predict(classes)
        return ThresholdChoice(value, f"{THRESHOLD_PRECEDENCE[1]} ({report.use})")
    if checkpoint is not None:
        return ThresholdChoice(single_threshold(checkpoint), THRESHOLD_PRECEDENCE[2])
    return ThresholdChoice(single_threshold(config), THRESHOLD_PRECEDENCE[3])


def single_threshold(threshold: float) -> float:
    """A single threshold within [0, 1] (``ValueError`` otherwise)."""
    value = float(threshold)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    return value
