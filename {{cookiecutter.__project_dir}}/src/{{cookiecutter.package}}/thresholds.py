"""Decision thresholds tuned on out-of-fold probabilities to maximise the competition metric.

The competition scores samples-F1 of label sets decoded at a threshold (``metrics.decode``:
probability > threshold, and an image with no label gets its arg-max). This module searches that
decode's thresholds on pooled out-of-fold (OOF) probabilities:

- ``tune_global``: one threshold for every class, the best point of a fine grid;
- ``tune_per_class``: one threshold per class, by coordinate ascent on the samples-F1 of the
  whole decode (the metric is per image and the arg-max fallback couples the classes, so each
  class's threshold is scored by what it does to every image's F1, not by its own class F1);
- ``choose_thresholds``: both, plus the config's default threshold, in a ``ThresholdReport``
  that says which thresholds ``predict`` should use and saves as a readable ``thresholds.json``.

Every search is deterministic (fixed grid, fixed class order, fixed tie-breaks) and vectorised:
a sweep of the whole grid is a handful of array operations on the (grid x images) matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import decode, samples_f1
from .predict.threshold_report import (
    MARGIN,
    MIN_POSITIVES,
    SHRINKAGE,
    ThresholdReport,
    single_threshold,
)

__all__ = ["ThresholdReport", "choose_thresholds", "tune_global", "tune_per_class"]

DEFAULT_GRID = np.round(np.arange(2, 99) / 100, 2)
"""Candidate thresholds: 0.02, 0.03, ..., 0.98."""

MAX_PASSES = 3
"""Coordinate-ascent passes over the classes (it stops early once a pass changes nothing)."""

_DECIMALS = 4
"""Per-class thresholds are rounded to this many decimals before they are scored and stored."""

_CHUNK = 1 << 22
"""Largest number of (threshold, image, class) cells a sweep holds in memory at once."""


def tune_global(
    probs: np.ndarray,
    targets: np.ndarray,
    grid: Sequence[float] | np.ndarray | None = None,
    prefer: float = 0.5,
) -> tuple[float, float]:
    """The single threshold of ``grid`` maximising samples-F1 of ``decode(probs, t)``, and that F1.

    ``grid`` defaults to ``DEFAULT_GRID`` (0.02 to 0.98 in steps of 0.01). Several grid points
    often tie (no probability lies between them); the one closest to ``prefer`` wins, then the
    lower one.
    """
    probs, truth = _check_oof(probs, targets)
    candidates = _check_grid(grid)
    scores = _sweep_global(probs, truth, candidates)
    best = _pick(candidates, scores, prefer)
    return float(best), samples_f1(truth, decode(probs, best))


def tune_per_class(
    probs: np.ndarray,
    targets: np.ndarray,
    start: float | None = None,
    grid: Sequence[float] | np.ndarray | None = None,
    min_positives: int = MIN_POSITIVES,
    shrinkage: float = SHRINKAGE,
    max_passes: int = MAX_PASSES,
) -> tuple[np.ndarray, float]:
    """Per-class thresholds maximising samples-F1 of the whole decode, and that F1.

    Starts with every class at ``start`` (the global threshold; tuned with ``tune_global`` when
    ``None``), then visits the classes in order, each time sweeping one class's threshold over
    ``grid`` with the others fixed and keeping the best (a move only on a strict gain; among
    ties, the candidate closest to the current value). Passes repeat until one changes nothing,
    at most ``max_passes`` times. Each candidate is scored by the samples-F1 of
    ``decode(probs, thresholds)``, arg-max fallback included.

    Guard against overfitting: a class with fewer than ``min_positives`` positive rows is never
    tuned and keeps ``start`` (see ``MIN_POSITIVES``); the others are then shrunk toward
    ``start`` by ``n / (n + shrinkage)`` (see ``SHRINKAGE``; 0 turns it off) and rounded to 4
    decimals. The returned F1 is that of the final, shrunk and rounded, thresholds.
    """
    probs, truth = _check_oof(probs, targets)
    candidates = _check_grid(grid)
    if min_positives < 0 or shrinkage < 0 or max_passes < 1:
        raise ValueError(
            f"need min_positives >= 0, shrinkage >= 0 and max_passes >= 1, got {min_positives}, "
            f"{shrinkage} and {max_passes}"
        )
    if start is None:
        start, _ = tune_global(probs, truth, candidates)
    start = single_threshold(start)
    positives = truth.sum(axis=0)
    tunable = [c for c in range(probs.shape[1]) if positives[c] >= min_positives]
    raw = _coordinate_ascent(probs, truth, start, candidates, tunable, max_passes)
    weights = positives / (positives + shrinkage) if shrinkage > 0 else np.ones(len(positives))
    final = np.full(probs.shape[1], start)
    final[tunable] = np.round(start + weights[tunable] * (raw[tunable] - start), _DECIMALS)
    return final, samples_f1(truth, decode(probs, final))


def choose_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    default_threshold: float,
    classes: Sequence[str],
    grid: Sequence[float] | np.ndarray | None = None,
    min_positives: int = MIN_POSITIVES,
    shrinkage: float = SHRINKAGE,
    margin: float = MARGIN,
) -> ThresholdReport:
    """Tune global and per-class thresholds on pooled OOF and decide which ``predict`` uses.

    ``use`` is ``"per_class"`` only if its OOF F1 beats the global threshold's by more than
    ``margin`` (see ``MARGIN``: both are fitted on the same OOF and per-class has more freedom
    to fit its noise), otherwise ``"global"``. The default threshold is one of the global
    candidates, so the tuned global F1 is never below the default's.
    """
    probs, truth = _check_oof(probs, targets)
    classes = [str(c) for c in classes]
    if len(classes) != probs.shape[1]:
        raise ValueError(f"{len(classes)} class names for {probs.shape[1]} probability columns")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    default = single_threshold(default_threshold)
    candidates = _check_grid(grid)
    global_t, global_f1 = tune_global(probs, truth, np.append(candidates, default), default)
    per_class, per_class_f1 = tune_per_class(
        probs, truth, global_t, candidates, min_positives=min_positives, shrinkage=shrinkage
    )
    return ThresholdReport(
        classes=classes,
        default_threshold=default,
        default_f1=samples_f1(truth, decode(probs, default)),
        global_threshold=global_t,
        global_f1=global_f1,
        per_class_thresholds=[float(t) for t in per_class],
        per_class_f1=per_class_f1,
        use="per_class" if per_class_f1 > global_f1 + margin else "global",
        n_images=len(probs),
        positives=[int(n) for n in truth.sum(axis=0)],
        min_positives=min_positives,
        shrinkage=float(shrinkage),
        margin=float(margin),
    )


Rows = tuple[np.ndarray, np.ndarray]


def _sweep_global(probs: np.ndarray, truth: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Samples-F1 of ``decode(probs, t)`` for every ``t`` in ``candidates``."""
    n, k = probs.shape
    true_sizes = truth.sum(axis=1)
    fallback_hit = truth[np.arange(n), probs.argmax(axis=1)]
    row_max = probs.max(axis=1)
    scores = np.empty(len(candidates))
    step = max(1, _CHUNK // (n * k))
    for lo in range(0, len(candidates), step):
        ts = candidates[lo : lo + step, None, None]
        above = probs[None] > ts
        hits = (above & truth[None]).sum(axis=2)
        sizes = above.sum(axis=2)
        empty = row_max[None] <= ts[:, :, 0]
        scores[lo : lo + step] = _mean_f1(hits, sizes, empty, (fallback_hit, true_sizes))
    return scores


def _sweep_class(
    probs: np.ndarray,
    truth: np.ndarray,
    thresholds: np.ndarray,
    c: int,
    candidates: np.ndarray,
) -> np.ndarray:
    """Samples-F1 of the decode for every candidate threshold of class ``c``, others fixed."""
    n = len(probs)
    others = np.ones(probs.shape[1], dtype=bool)
    others[c] = False
    fixed = probs[:, others] > thresholds[others]
    fixed_hits = (fixed & truth[:, others]).sum(axis=1)
    fixed_sizes = fixed.sum(axis=1)
    fixed_any = fixed_sizes > 0
    fallback_hit = truth[np.arange(n), probs.argmax(axis=1)]
    true_sizes = truth.sum(axis=1)
    scores = np.empty(len(candidates))
    step = max(1, _CHUNK // n)
    for lo in range(0, len(candidates), step):
        on = probs[None, :, c] > candidates[lo : lo + step, None]
        hits = fixed_hits[None] + (on & truth[None, :, c])
        sizes = fixed_sizes[None] + on
        empty = ~(on | fixed_any[None])
        scores[lo : lo + step] = _mean_f1(hits, sizes, empty, (fallback_hit, true_sizes))
    return scores


def _mean_f1(hits: np.ndarray, sizes: np.ndarray, empty: np.ndarray, rows: Rows) -> np.ndarray:
    """Samples-F1 per candidate row; an image with no label above threshold gets its arg-max.

    ``rows``: per image, whether its arg-max label is true, and its number of true labels.
    """
    fallback_hit, true_sizes = rows
    hits = np.where(empty, fallback_hit[None], hits)
    sizes = np.where(empty, 1, sizes)
    result: np.ndarray = (2.0 * hits / (true_sizes[None] + sizes)).mean(axis=1)
    return result


def _coordinate_ascent(
    probs: np.ndarray,
    truth: np.ndarray,
    start: float,
    candidates: np.ndarray,
    tunable: list[int],
    max_passes: int,
) -> np.ndarray:
    """Per-class thresholds from ``start``, improving one tunable class at a time."""
    thresholds = np.full(probs.shape[1], start)
    for _ in range(max_passes):
        changed = False
        for c in tunable:
            current = thresholds[c]
            options = np.append(candidates, current)
            scores = _sweep_class(probs, truth, thresholds, c, options)
            if scores.max() > scores[-1]:
                thresholds[c] = _pick(candidates, scores[:-1], current)
                changed = True
        if not changed:
            break
    return thresholds


def _pick(candidates: np.ndarray, scores: np.ndarray, prefer: float) -> float:
    """The best-scoring candidate; among ties, the closest to ``prefer``, then the lowest."""
    tied = candidates[scores == scores.max()]
    return float(tied[np.argmin(np.abs(tied - prefer))])


def _check_oof(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OOF probabilities as float64 and targets as bool, both (images x classes), validated."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets)
    if p.ndim != 2 or t.ndim != 2:
        raise ValueError(
            f"probs and targets must be 2-D (images x classes), got shapes {p.shape}, {t.shape}"
        )
    if p.shape != t.shape:
        raise ValueError(f"probs {p.shape} and targets {t.shape} differ in shape")
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"no OOF rows or no classes to tune thresholds on (shape {p.shape})")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs hold NaN or infinite values")
    if not np.all((t == 0) | (t == 1)):
        raise ValueError("targets must hold only 0 and 1 (a multi-hot label matrix)")
    return p, t.astype(bool)


def _check_grid(grid: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """The candidate thresholds, sorted and unique, each within [0, 1]."""
    values = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"grid must be a non-empty 1-D sequence of thresholds, got {grid!r}")
    if not np.all((values >= 0.0) & (values <= 1.0)):
        raise ValueError(f"grid thresholds must be within [0, 1], got {values.tolist()}")
    return np.unique(values)
