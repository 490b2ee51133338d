"""``thresholds.json``: what threshold tuning found, and which thresholds ``predict`` uses.

``ThresholdReport`` is written by ``cv`` (see ``thresholds.choose_thresholds``) and read by
``predict --ckpt_path CV_DIR``; it validates itself, so a hand-edited or damaged file is one
``DataError`` naming the field, never a wrong decode. ``decide_threshold`` is the one rule of
which threshold a prediction decodes at (``THRESHOLD_PRECEDENCE``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.atomic import write_json
from ..utils.errors import DataError
from ..utils.jsonfile import field, read_json
from ..workflows.cv_files import THRESHOLDS

MIN_POSITIVES = 20
"""A class with fewer positive OOF images than this keeps the global threshold.

Moving one class's threshold changes the F1 of the images whose probability for that class lies
between the old and the new threshold. With under ~20 positives, the best threshold is decided
by a handful of images and fits their noise (one image moves a class's recall by over 5 %), and
the gain it shows on the OOF it was fitted on does not carry to the test set. Every class of
Plant Pathology 2021 has hundreds of positives in the 18,632 training images, so this guard only
bites on small data (the sample set, a tiny custom dataset), where the global threshold is the
safer choice.
"""

SHRINKAGE = 20.0
"""Each tuned class threshold is pulled toward the global one with weight ``n / (n + SHRINKAGE)``.

``n`` is the class's number of positive OOF images: the global threshold counts as much as
``SHRINKAGE`` extra positives. A class with exactly ``MIN_POSITIVES`` positives moves half-way
to its own optimum; one with 1,000 positives moves 98 % of the way. This smooths the hard
``MIN_POSITIVES`` cut-off for classes just above it and barely touches well-populated classes.
"""

MARGIN = 0.002
"""Per-class thresholds are used only if their OOF F1 beats the global threshold's by more.

Both are fitted on the same OOF, but per-class tuning has one free parameter per class instead
of one, so its OOF F1 flatters it more. On 18,632 synthetic images (PP2021's class frequencies,
noisy logits; ``tune_per_class`` defaults) per-class tuning gained at most 0.0003 over global on
the OOF when all classes truly share one best threshold, and every time it gained more than
0.002 it also gained on an independent draw (0.001 to 0.003). One image weighs ~0.00005 of the
F1, so 0.002 is ~40 images fixed outright, and the leaderboard shows 3 decimals.
"""

USES = ("global", "per_class")

THRESHOLD_PRECEDENCE = (
    "--model.threshold on the command line",
    f"the {THRESHOLDS} of the cv folder",
    "the checkpoint's model.threshold",
    "the config's model.threshold",
)
"""Which threshold a prediction decodes at: the first of these that exists.

A threshold typed on the command line is the user's explicit choice; a cv folder's tuned
thresholds were fitted to its out-of-fold predictions; the checkpoint's is what the model was
validated at; the config's (the shipped configs say 0.4) only decides when none of those exist.
"""


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
    """What threshold tuning found on the pooled OOF, and which thresholds ``predict`` uses.

    F1 values are the pooled OOF samples-F1 of ``decode`` at the thresholds next to them, so
    each one can be recomputed from the OOF probabilities and the training labels.
    """

    classes: list[str]
    default_threshold: float
    default_f1: float
    global_threshold: float
    global_f1: float
    per_class_thresholds: list[float]
    per_class_f1: float
    use: str
    n_images: int
    positives: list[int]
    min_positives: int = MIN_POSITIVES
    shrinkage: float = SHRINKAGE
    margin: float = MARGIN

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise DataError(f"threshold report: {problem}")

    @property
    def kept_global(self) -> list[str]:
        """Classes with too few positives to tune: they keep the global threshold."""
        return [c for c, n in zip(self.classes, self.positives) if n < self.min_positives]

    @property
    def chosen_f1(self) -> float:
        """Pooled OOF F1 of the thresholds ``predict`` uses."""
        return self.per_class_f1 if self.use == "per_class" else self.global_f1

    def thresholds_for_predict(self, classes: Sequence[str] | None = None) -> float | list[float]:
        """The threshold (``use == "global"``) or per-class thresholds in class order.

        Pass the classes of the model that will predict: a different vocabulary or order raises
        ``DataError`` instead of applying thresholds to the wrong classes.
        """
        if classes is not None and list(classes) != self.classes:
            raise DataError(
                f"thresholds were tuned for classes {self.classes}, the model predicts "
                f"{list(classes)}"
            )
        if self.use == "per_class":
            return list(self.per_class_thresholds)
        return self.global_threshold

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, per-class values keyed by class name."""
        return {
            "use": self.use,
            "classes": list(self.classes),
            "default": {"threshold": self.default_threshold, "f1": self.default_f1},
            "global": {"threshold": self.global_threshold, "f1": self.global_f1},
            "per_class": {
                "thresholds": dict(zip(self.classes, self.per_class_thresholds)),
                "f1": self.per_class_f1,
            },
            "n_images": self.n_images,
            "positives": dict(zip(self.classes, self.positives)),
            "kept_global": self.kept_global,
            "min_positives": self.min_positives,
            "shrinkage": self.shrinkage,
            "margin": self.margin,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ThresholdReport:
        """The report ``to_dict`` described; ``DataError`` naming the first bad field."""
        if not isinstance(data, dict):
            raise DataError(f"threshold report: expected a JSON object, got {type(data).__name__}")
        classes = field(data, "classes", list)
        return cls(
            classes=[str(c) for c in classes],
            default_threshold=field(data, "default.threshold", float),
            default_f1=field(data, "default.f1", float),
            global_threshold=field(data, "global.threshold", float),
            global_f1=field(data, "global.f1", float),
            per_class_thresholds=_by_class(data, "per_class.thresholds", classes, float),
            per_class_f1=field(data, "per_class.f1", float),
            use=field(data, "use", str),
            n_images=field(data, "n_images", int),
            positives=_by_class(data, "positives", classes, int),
            min_positives=field(data, "min_positives", int),
            shrinkage=field(data, "shrinkage", float),
            margin=field(data, "margin", float),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report as indented JSON, atomically; returns the path."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ThresholdReport:
        """Read a report ``save`` wrote; ``DataError`` naming the file if it is unusable."""
        return read_json(path, cls.from_dict, "threshold report")

    def _problem(self) -> str | None:
        """What makes this report inconsistent, or ``None``."""
        n = len(self.classes)
        if n == 0 or len(set(self.classes)) != n:
            return f"classes must be distinct and non-empty, got {self.classes}"
        if len(self.per_class_thresholds) != n or len(self.positives) != n:
            return f"per-class values must number {n}, one per class"
        if self.use not in USES:
            return f"use must be one of {list(USES)}, got {self.use!r}"
        thresholds = [self.default_threshold, self.global_threshold, *self.per_class_thresholds]
        if not all(0.0 <= t <= 1.0 for t in thresholds):
            return f"thresholds must be within [0, 1], got {thresholds}"
        if not all(0.0 <= f <= 1.0 for f in (self.default_f1, self.global_f1, self.per_class_f1)):
            return "F1 values must be within [0, 1]"
        return None


def decide_threshold(
    classes: Sequence[str],
    config: float,
    *,
    flag: float | None = None,
    cv_folder: str | os.PathLike | None = None,
    checkpoint: float | None = None,
) -> ThresholdChoice:
    """The threshold a prediction with a model of ``classes`` decodes at (``THRESHOLD_PRECEDENCE``).

    Args:
        classes: the model's label vocabulary (a cv folder's thresholds must be tuned for it).
        config: the config's ``model.threshold`` (the signature's default when no config sets it).
        flag: ``--model.threshold`` when the user typed it, else ``None`` (even when it equals the
            default).
        cv_folder: the cv folder predicted with, if any; its ``thresholds.json`` is used when
            present.
        checkpoint: the ``threshold`` hyper-parameter saved in the (first) checkpoint, if any.
    """
    if flag is not None:
        return ThresholdChoice(single_threshold(flag), THRESHOLD_PRECEDENCE[0])
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


def _by_class(data: dict, dotted: str, classes: list, kind: type) -> list:
    """Values of the ``{class: value}`` mapping at ``dotted``, in ``classes`` order."""
    mapping = field(data, dotted, dict)
    if sorted(mapping) != sorted(str(c) for c in classes):
        raise DataError(
            f"threshold report: {dotted!r} has keys {sorted(mapping)}, expected the classes "
            f"{classes}"
        )
    return [field(mapping, str(c), kind) for c in classes]
