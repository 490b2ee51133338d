"""The competition metric and decoding, on examples worked out by hand."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from {{ cookiecutter.package }}.metrics import (
    decode,
    labels_to_text,
    most_frequent_set_score,
    per_class_f1,
    per_image_f1,
    score,
)


def test_samples_f1_averages_per_image_f1():
    targets = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # image 1: exact (1.0); image 2: P=1, R=1/2 -> 2/3; image 3: nothing right -> 0.
    assert score(targets, predicted) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_samples_f1_is_not_weighted_f1():
    targets = np.array([[1, 0], [1, 0], [1, 0], [0, 1]])
    predicted = np.array([[1, 1], [1, 0], [1, 0], [1, 0]])
    weighted = f1_score(targets, predicted, average="weighted", zero_division=0)
    # per image: 2/3, 1, 1, 0 -> 2/3 averaged; weighted F1 over classes differs.
    assert score(targets, predicted) == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert score(targets, predicted) != pytest.approx(weighted)


def test_empty_predictions_score_zero_although_elementwise_accuracy_is_high():
    targets = np.eye(6, dtype=int)
    nothing = np.zeros_like(targets)
    assert (nothing == targets).mean() == pytest.approx(5 / 6)
    assert score(targets, nothing) == 0.0


def test_decode_thresholds_and_falls_back_to_argmax():
    probs = np.array([[0.9, 0.6, 0.1], [0.42, 0.45, 0.1], [0.7, 0.5, 0.1]])
    # row 2: nothing above 0.5 (arg-max), two labels above 0.4; row 3: 0.5 is not above 0.5
    assert decode(probs, 0.5).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert decode(probs, 0.4).tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 0]]
    assert decode(probs, 0.95).tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]


def test_decode_uses_the_threshold_it_is_given():
    probs = np.array([[0.3, 0.35, 0.2]])
    assert decode(probs, 0.25).tolist() == [[1, 1, 0]]
    assert decode(probs, 0.3).tolist() == [[0, 1, 0]]  # 0.3 itself is not above 0.3


def test_decode_rejects_a_vector():
    with pytest.raises(ValueError, match="2-D"):
        decode(np.array([0.1, 0.9]))


def test_decode_takes_one_threshold_per_class_with_the_strict_boundary_per_class():
    probs = np.array([[0.3, 0.7, 0.1], [0.31, 0.69, 0.2]])
    # each value equals its own class's threshold in row 1: none is above it
    assert decode(probs, [0.3, 0.7, 0.1]).tolist() == [[0, 1, 0], [1, 0, 1]]
    assert decode(probs, np.array([0.29, 0.69, 0.05])).tolist() == [[1, 1, 1], [1, 0, 1]]
    assert decode(probs, (0.3, 0.7, 0.1)).tolist() == decode(probs, [0.3, 0.7, 0.1]).tolist()


def test_decode_with_per_class_thresholds_falls_back_to_the_highest_probability():
    # nothing passes its threshold: the arg-max of the probabilities (class 0), not the class
    # closest to its threshold (class 1)
    probs = np.array([[0.6, 0.24], [0.6, 0.26]])
    assert decode(probs, [0.9, 0.25]).tolist() == [[1, 0], [0, 1]]


def test_decode_with_equal_per_class_thresholds_equals_the_scalar():
    probs = np.random.default_rng(3).random((200, 4))
    assert np.array_equal(decode(probs, [0.4] * 4), decode(probs, 0.4))


@pytest.mark.parametrize("threshold", [[0.5, 0.5], [0.5], [0.1, 0.2, 0.3, 0.4]])
def test_decode_rejects_a_threshold_vector_of_the_wrong_length(threshold):
    with pytest.raises(ValueError, match=rf"got {len(threshold)} values .* for 3 classes"):
        decode(np.full((2, 3), 0.5), threshold)


def test_decode_rejects_a_threshold_matrix():
    with pytest.raises(ValueError, match="one threshold, or one per class"):
        decode(np.full((2, 3), 0.5), np.full((2, 3), 0.5))


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), [0.5, 1.01, 0.5]])
def test_decode_rejects_thresholds_outside_zero_one(threshold):
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        decode(np.full((2, 3), 0.5), threshold)


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_samples_f1_equals_sklearn_exactly(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 300)), int(rng.integers(2, 8)))
    # sparse rows: many images with an empty true or predicted set, or both
    targets = (rng.random(shape) < 0.2).astype(np.int64)
    predicted = rng.random(shape) < 0.25
    expected = f1_score(targets, predicted, average="samples", zero_division=0)
    assert score(targets, predicted) == expected
    decoded = decode(rng.random(shape), 0.6)
    assert score(targets, decoded) == f1_score(targets, decoded, average="samples", zero_division=0)


def test_per_image_f1_scores_empty_sets_zero():
    targets = np.array([[0, 0], [0, 0], [1, 0]])
    predicted = np.array([[0, 0], [1, 0], [1, 1]])
    assert per_image_f1(targets, predicted).tolist() == [0.0, 0.0, 2 / 3]


@pytest.mark.parametrize(
    "targets, predicted, message",
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "differ in shape"),
        (np.zeros((3, 2)), np.full((3, 2), 0.7), "only 0 and 1"),
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "no images"),
    ],
)
def test_samples_f1_rejects_bad_inputs(targets, predicted, message):
    with pytest.raises(ValueError, match=message):
        score(targets, predicted)


def test_per_class_f1_and_label_text():
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    predicted = np.array([[1, 0], [1, 1], [1, 0]])
    # class 0: TP 2, FP 1, FN 0 -> 0.8; class 1: TP 1, FP 0, FN 1 -> 2/3
    assert per_class_f1(targets, predicted) == pytest.approx([0.8, 2 / 3])
    assert labels_to_text(predicted, ["rust", "scab"]) == ["rust", "rust scab", "rust"]


def test_most_frequent_label_set_baseline():
    targets = np.array([[1, 0], [1, 0], [0, 1], [1, 1]])
    # always [1, 0]: 1, 1, 0, 2/3
    assert most_frequent_set_score(targets) == pytest.approx((1 + 1 + 0 + 2 / 3) / 4)
