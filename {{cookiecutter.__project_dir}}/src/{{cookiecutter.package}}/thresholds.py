"""Decision thresholds tuned on out-of-fold (OOF) probabilities: each candidate is judged by
``metrics.score`` of the whole ``metrics.decode`` (arg-max fallback included), in the metric's
direction. ``tune_global`` finds one threshold, ``tune_per_class`` one per class (coordinate
ascent), ``choose_thresholds`` both, in the ``ThresholdReport`` ``cv`` saves for ``predict``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from . import metrics
from .metrics import Thresholds, decode
from .predict.threshold_report import MARGIN, MIN_POSITIVES, SHRINKAGE
from .predict.threshold_report import ThresholdReport, single_threshold

__all__ = ["ThresholdReport", "choose_thresholds", "tune_global", "tune_per_class"]

DEFAULT_GRID = np.round(np.arange(2, 99) / 100, 2)  # 0.02, 0.03, ..., 0.98

MAX_PASSES = 3  # coordinate-ascent passes over the classes (fewer once one changes nothing)


def tune_global(
    probs: np.ndarray,
    targets: np.ndarray,
    grid: Sequence[float] | np.ndarray | None = None,
    prefer: float = 0.5,
) -> tuple[float, float]:
    """The threshold of ``grid`` best for the metric, and its score (ties: nearest ``prefer``)."""
    probs, truth = _check_oof(probs, targets)
    candidates = _check_grid(grid)
    best = _pick(candidates, _gains(probs, truth, candidates), prefer)
    return best, metrics.score(truth, decode(probs, best))


def tune_per_class(
    probs: np.ndarray,
    targets: np.ndarray,
    start: float | None = None,
    grid: Sequence[float] | np.ndarray | None = None,
    min_positives: int = MIN_POSITIVES,
    shrinkage: float = SHRINKAGE,
) -> tuple[np.ndarray, float]:
    """Per-class thresholds best for the metric of the whole decode, and their score.

    From ``start`` (``tune_global``'s when ``None``), each class in turn sweeps ``grid``, others
    fixed, and moves on a strict gain only (ties: closest to its value), for up to ``MAX_PASSES``
    passes. A class with under ``min_positives`` positives keeps ``start``; the others are shrunk
    toward it by ``n / (n + shrinkage)`` and rounded to 4 decimals."""
    probs, truth = _check_oof(probs, targets)
    candidates = _check_grid(grid)
    if min_positives < 0 or shrinkage < 0:
        raise ValueError(
            f"need min_positives >= 0 and shrinkage >= 0, got {min_positives} and {shrinkage}"
        )
    start = single_threshold(tune_global(probs, truth, candidates)[0] if start is None else start)
    positives = truth.sum(axis=0)
    tunable = [c for c in range(probs.shape[1]) if positives[c] >= min_positives]
    tuned = np.full(probs.shape[1], start)
    for _ in range(MAX_PASSES):  # coordinate ascent, one tunable class at a time
        changed = False
        for c in tunable:
            options = np.append(candidates, tuned[c])
            moved = [np.where(np.arange(len(tuned)) == c, t, tuned) for t in options]
            gains = _gains(probs, truth, moved)
            if gains.max() > gains[-1]:
                tuned[c] = _pick(candidates, gains[:-1], tuned[c])
                changed = True
        if not changed:
            break
    weights = positives / (positives + shrinkage) if shrinkage > 0 else np.ones(len(positives))
    final = np.full(probs.shape[1], start)
    final[tunable] = np.round(start + weights[tunable] * (tuned[tunable] - start), 4)
    return final, metrics.score(truth, decode(probs, final))


def choose_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    default_threshold: float,
    classes: Sequence[str],
    min_positives: int = MIN_POSITIVES,
    shrinkage: float = SHRINKAGE,
    margin: float = MARGIN,
) -> ThresholdReport:
    """Tune global and per-class thresholds on pooled OOF and decide which ``predict`` uses.

    ``use`` is ``"per_class"`` only if it beats global by more than ``margin`` (it has more
    freedom to fit the OOF's noise). The default is a global candidate: tuning never loses to it."""
    probs, truth = _check_oof(probs, targets)
    classes = [str(c) for c in classes]
    if len(classes) != probs.shape[1]:
        raise ValueError(f"{len(classes)} class names for {probs.shape[1]} probability columns")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    default = single_threshold(default_threshold)
    global_t, global_score = tune_global(probs, truth, np.append(DEFAULT_GRID, default), default)
    per_class, per_class_score = tune_per_class(
        probs, truth, global_t, DEFAULT_GRID, min_positives=min_positives, shrinkage=shrinkage
    )
    gain = (per_class_score - global_score) * (1 if metrics.HIGHER_IS_BETTER else -1)
    return ThresholdReport(
        classes=classes,
        default_threshold=default,
        default_score=metrics.score(truth, decode(probs, default)),
        global_threshold=global_t,
        global_score=global_score,
        per_class_thresholds=[float(t) for t in per_class],
        per_class_score=per_class_score,
        use="per_class" if gain > margin else "global",
        n_images=len(probs),
        positives=[int(n) for n in truth.sum(axis=0)],
        min_positives=min_positives,
        shrinkage=float(shrinkage),
        margin=float(margin),
        metric=metrics.NAME,
    )


def _gains(probs: np.ndarray, truth: np.ndarray, options: Iterable[Thresholds]) -> np.ndarray:
    """``metrics.score`` of ``decode(probs, t)`` for each ``t``, negated if lower is better."""
    sign = 1.0 if metrics.HIGHER_IS_BETTER else -1.0
    return np.array([sign * metrics.score(truth, decode(probs, t)) for t in options])


def _pick(candidates: np.ndarray, gains: np.ndarray, prefer: float) -> float:
    """The candidate of highest gain; among ties, the closest to ``prefer``, then the lowest."""
    tied = candidates[gains == gains.max()]
    return float(tied[np.argmin(np.abs(tied - prefer))])


def _check_oof(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OOF probabilities (float64) and 0/1 targets (int64), both images x classes, validated."""
    p = np.asarray(probs, dtype=np.float64)
    t = metrics.as_multi_hot(targets, "targets")
    if p.shape != t.shape:
        raise ValueError(f"probs {p.shape} and targets {t.shape} differ in shape")
    if p.size == 0:
        raise ValueError(f"no OOF rows or no classes to tune thresholds on (shape {p.shape})")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs hold NaN or infinite values")
    return p, t.astype(np.int64)


def _check_grid(grid: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """The candidate thresholds, sorted and unique, each within [0, 1]."""
    values = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"grid must be a non-empty 1-D sequence of thresholds, got {grid!r}")
    if not np.all((values >= 0.0) & (values <= 1.0)):
        raise ValueError(f"grid thresholds must be within [0, 1], got {values.tolist()}")
    return np.unique(values)
