"""The competition metric (``score``, its ``NAME`` and direction) and the decoding of probabilities.

Edit these three to compete on another metric: ``val/<NAME>``, the checkpoint monitor, threshold
tuning, ``cv.json``, ``tune``, ``report`` and the notebooks read them when they run. Plant
Pathology 2021 scores per-image F1 averaged over images (``f1_score(average="samples")``), not
element-wise accuracy (predicting nothing scores ~0.83 on six labels) nor weighted F1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from .utils.errors import DataError

NAME = "f1"
"""The metric's name: logged as ``val/<NAME>``, in ``cv.json`` keys and in figure labels."""

HIGHER_IS_BETTER = True
"""Checkpoints, threshold tuning and ``tune`` maximise ``score`` (minimise it when False)."""

Thresholds = float | Sequence[float] | np.ndarray


def score(targets: np.ndarray, predicted: np.ndarray) -> float:
    """The competition metric of multi-hot label sets (images x classes): mean per-image F1."""
    scores = per_image_f1(targets, predicted)
    if len(scores) == 0:
        raise ValueError("samples F1 of no images is undefined")
    return float(scores.mean())


def logged_key(stage: str = "val") -> str:
    """The key the metric is logged (and monitored) under: ``val/<NAME>``, ``test/<NAME>``."""
    return f"{stage}/{NAME}"


def mode() -> str:
    """``"max"`` or ``"min"``: the metric's direction, in Lightning's words."""
    return "max" if HIGHER_IS_BETTER else "min"


def decode(probs: np.ndarray, threshold: Thresholds = 0.5) -> np.ndarray:
    """Multi-hot labels: probability > threshold (one, or one per class); none passing: arg-max."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (images x classes), got shape {probs.shape}")
    predicted = probs > check_thresholds(threshold, probs.shape[1])
    empty = ~predicted.any(axis=1)
    predicted[empty, probs[empty].argmax(axis=1)] = True
    return predicted.astype(np.int64)


def check_thresholds(threshold: Thresholds, n_classes: int) -> float | np.ndarray:
    """``threshold`` as a float or ``n_classes`` floats, each in [0, 1]; ``DataError`` if not."""
    values = np.asarray(threshold, dtype=np.float64)
    if values.ndim > 1 or (values.ndim == 1 and len(values) != n_classes):
        raise DataError(
            f"thresholds: got {values.size} values (shape {values.shape}) for {n_classes} "
            "classes; give one threshold, or one per class"
        )
    if not np.all((values >= 0.0) & (values <= 1.0)):
        raise DataError(f"thresholds must be within [0, 1], got {values.tolist()}")
    return float(values) if values.ndim == 0 else values


def per_image_f1(targets: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of each image's label set, ``2·TP / (|true| + |predicted|)`` (0 where both are empty)."""
    truth = as_multi_hot(targets, "targets")
    guess = as_multi_hot(predicted, "predicted")
    if truth.shape != guess.shape:
        raise ValueError(f"targets {truth.shape} and predicted {guess.shape} differ in shape")
    true_positives = (truth & guess).sum(axis=1)
    sizes = truth.sum(axis=1) + guess.sum(axis=1)
    scores = np.zeros(len(truth), dtype=np.float64)
    np.divide(2.0 * true_positives, sizes, out=scores, where=sizes > 0)
    return scores


def as_multi_hot(matrix: np.ndarray, name: str) -> np.ndarray:
    """``matrix`` (images x classes) as a boolean array; ``ValueError`` naming it unless 2-D 0/1."""
    values = np.asarray(matrix)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (images x classes), got shape {values.shape}")
    if values.dtype != np.bool_:
        if not np.all((values == 0) | (values == 1)):
            raise ValueError(f"{name} must hold only 0 and 1 (a multi-hot label matrix)")
        values = values.astype(np.bool_)
    return values


def per_class_f1(targets: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of each class over all images (one value per column)."""
    return f1_score(targets, predicted, average=None, zero_division=0)


def labels_to_text(predicted: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Space-separated label names per row, in vocabulary order (the submission format)."""
    return [" ".join(c for c, on in zip(classes, row) if on) for row in np.asarray(predicted)]


def most_frequent_set_score(targets: np.ndarray, reference: np.ndarray | None = None) -> float:
    """``score`` on ``targets`` of always predicting the most frequent set of ``reference``."""
    reference = targets if reference is None else reference
    rows, counts = np.unique(np.asarray(reference, dtype=np.int64), axis=0, return_counts=True)
    constant = np.repeat(rows[counts.argmax()][None, :], len(targets), axis=0)
    return score(np.asarray(targets, dtype=np.int64), constant)
