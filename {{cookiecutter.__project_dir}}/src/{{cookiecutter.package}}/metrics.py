"""The competition metric and the decoding of probabilities into label sets.

Plant Pathology 2021 scores the F1 of each image's predicted label set, averaged over images
(scikit-learn's ``f1_score(average="samples")``). Element-wise accuracy over the label matrix is
not that metric (predicting nothing scores ~0.83 on six labels), nor is weighted F1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score


def decode(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Multi-hot predictions: probability > ``threshold``; an image with none gets its arg-max.

    Every image gets at least one label, as every image in the competition has one.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (images x classes), got shape {probs.shape}")
    predicted = probs > threshold
    empty = ~predicted.any(axis=1)
    predicted[empty, probs[empty].argmax(axis=1)] = True
    return predicted.astype(np.int64)


def samples_f1(targets: np.ndarray, predicted: np.ndarray) -> float:
    """The competition metric: per-image F1 of the label sets, averaged over images."""
    return float(f1_score(targets, predicted, average="samples", zero_division=0))


def per_class_f1(targets: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of each class over all images (one value per column)."""
    return f1_score(targets, predicted, average=None, zero_division=0)


def labels_to_text(predicted: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Space-separated label names per row, in vocabulary order (the submission format)."""
    return [" ".join(c for c, on in zip(classes, row) if on) for row in np.asarray(predicted)]


def most_frequent_set_f1(targets: np.ndarray, reference: np.ndarray | None = None) -> float:
    """Score on ``targets`` of always predicting the most frequent label set of ``reference``.

    ``reference`` defaults to ``targets``; pass the training targets to score a validation set.
    """
    reference = targets if reference is None else reference
    rows, counts = np.unique(np.asarray(reference, dtype=np.int64), axis=0, return_counts=True)
    constant = np.repeat(rows[counts.argmax()][None, :], len(targets), axis=0)
    return samples_f1(np.asarray(targets, dtype=np.int64), constant)
