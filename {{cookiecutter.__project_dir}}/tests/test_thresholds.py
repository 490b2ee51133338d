"""Threshold tuning on out-of-fold probabilities, on synthetic data with known best thresholds."""

import json
import re

import numpy as np
import pytest
from sklearn.metrics import f1_score

from {{ cookiecutter.package }}.utils.errors import DataError
from {{ cookiecutter.package }}.metrics import decode
from {{ cookiecutter.package }}.thresholds import (
    DEFAULT_GRID,
    ThresholdReport,
    choose_thresholds,
    tune_global,
    tune_per_class,
)

CLASSES = ["healthy", "rust", "scab"]


def sklearn_f1(targets, probs, thresholds):
    """The competition metric computed independently of the code under test's own F1."""
    return f1_score(targets, decode(probs, thresholds), average="samples", zero_division=0)


def separable(boundaries, n=1500, seed=0, positives=None):
    """Probabilities whose best threshold for class ``c`` is ``boundaries[c]``.

    Positives lie in (b + 0.004, 1), negatives in (0, b - 0.004): of the 0.01-step grid, only
    ``b`` separates them, and every other grid point misclassifies some images. Each image has at
    least one true label. ``positives`` caps a class's number of positive images.
    """
    rng = np.random.default_rng(seed)
    k = len(boundaries)
    targets = rng.random((n, k)) < 0.5
    for c, cap in (positives or {}).items():
        targets[:, c] = False
        targets[rng.choice(n, cap, replace=False), c] = True
    empty = ~targets.any(axis=1)
    targets[empty, 0] = True
    probs = np.empty((n, k))
    for c, b in enumerate(boundaries):
        above = rng.uniform(b + 0.004, 1.0, n)
        below = rng.uniform(0.0, b - 0.004, n)
        probs[:, c] = np.where(targets[:, c], above, below)
    return probs, targets.astype(np.int64)


def test_tuned_global_threshold_finds_the_known_best_and_beats_the_default():
    probs, targets = separable([0.3, 0.3, 0.3])
    # confidently wrong images score 0 at every grid threshold: F1 stays below 1
    probs[:50] = np.where(targets[:50] == 1, 0.001, 0.999)
    threshold, f1 = tune_global(probs, targets)
    assert threshold == pytest.approx(0.3, abs=0.01)
    assert f1 == pytest.approx(sklearn_f1(targets, probs, threshold), abs=1e-12)
    assert f1 >= sklearn_f1(targets, probs, 0.5)
    assert f1 < 1.0


def test_tuned_global_threshold_is_the_best_point_of_the_grid():
    rng = np.random.default_rng(1)
    targets = (rng.random((400, 4)) < 0.3).astype(np.int64)
    probs = np.clip(0.35 * targets + 0.65 * rng.random((400, 4)), 0, 1)
    grid = DEFAULT_GRID[::5]
    brute = [sklearn_f1(targets, probs, t) for t in grid]
    threshold, f1 = tune_global(probs, targets, grid)
    assert f1 == pytest.approx(max(brute), abs=1e-12)
    assert threshold == grid[int(np.argmax(brute))]


def test_per_class_tuning_recovers_different_known_thresholds():
    probs, targets = separable([0.3, 0.7, 0.5])
    exact, f1 = tune_per_class(probs, targets, start=0.5, shrinkage=0)
    assert exact.tolist() == pytest.approx([0.3, 0.7, 0.5], abs=1e-9)
    assert f1 == 1.0
    assert sklearn_f1(targets, probs, exact) == 1.0
    shrunk, _ = tune_per_class(probs, targets, start=0.5)
    assert shrunk.tolist() == pytest.approx([0.3, 0.7, 0.5], abs=0.01)
    _, global_f1 = tune_global(probs, targets)
    assert global_f1 < 1.0


def test_per_class_thresholds_are_a_local_optimum_of_the_whole_decode():
    # the arg-max fallback couples classes: no single class's threshold can be improved on
    # the grid, measured on every image's F1 with the fallback
    rng = np.random.default_rng(2)
    targets = (rng.random((300, 4)) < 0.35).astype(np.int64)
    probs = np.clip(0.3 * targets + 0.7 * rng.random((300, 4)), 0, 1)
    grid = DEFAULT_GRID[::4]
    tuned, f1 = tune_per_class(probs, targets, start=0.5, grid=grid, shrinkage=0)
    for c in range(4):
        for t in grid:
            moved = tuned.copy()
            moved[c] = t
            assert sklearn_f1(targets, probs, moved) <= f1 + 1e-12


def test_a_class_with_few_positives_keeps_the_global_threshold():
    probs, targets = separable([0.3, 0.7, 0.8], positives={2: 10})
    tuned, _ = tune_per_class(probs, targets, start=0.5)
    assert tuned[2] == 0.5
    assert tuned[:2].tolist() == pytest.approx([0.3, 0.7], abs=0.01)
    # the guard, not the data, kept it: with a lower bar the class is tuned
    unguarded, _ = tune_per_class(probs, targets, start=0.5, min_positives=5, shrinkage=0)
    assert unguarded[2] == pytest.approx(0.8)


def test_a_class_just_above_the_bar_is_shrunk_toward_the_global_threshold():
    probs, targets = separable([0.3, 0.7, 0.5], positives={1: 30})
    raw, _ = tune_per_class(probs, targets, start=0.5, shrinkage=0)
    assert raw[1] == pytest.approx(0.7)
    shrunk, f1 = tune_per_class(probs, targets, start=0.5, shrinkage=20)
    # 30 positives against a prior worth 20: 30 / 50 of the way from 0.5 to 0.7
    assert shrunk[1] == pytest.approx(0.62)
    assert f1 == pytest.approx(sklearn_f1(targets, probs, shrunk), abs=1e-12)


def test_report_uses_per_class_thresholds_only_when_they_beat_global_by_the_margin():
    probs, targets = separable([0.3, 0.7, 0.5])
    report = choose_thresholds(probs, targets, 0.5, CLASSES)
    assert report.use == "per_class"
    assert report.per_class_score > report.global_score + report.margin
    assert report.thresholds_for_predict() == report.per_class_thresholds
    assert report.thresholds_for_predict() == pytest.approx([0.3, 0.7, 0.5], abs=0.01)
    assert report.chosen_score == report.per_class_score
    strict = choose_thresholds(probs, targets, 0.5, CLASSES, margin=1.0)
    assert strict.use == "global"
    assert strict.thresholds_for_predict() == strict.global_threshold


def test_report_keeps_global_when_classes_share_one_threshold():
    probs, targets = separable([0.3, 0.3, 0.3])
    report = choose_thresholds(probs, targets, 0.5, CLASSES)
    assert report.use == "global"
    assert report.thresholds_for_predict() == pytest.approx(0.3)
    assert isinstance(report.thresholds_for_predict(), float)
    assert report.default_threshold == 0.5
    assert report.default_score == pytest.approx(sklearn_f1(targets, probs, 0.5), abs=1e-12)
    assert report.global_score >= report.default_score


def test_report_f1_values_are_recomputable_from_the_thresholds():
    rng = np.random.default_rng(4)
    targets = (rng.random((500, 3)) < 0.4).astype(np.int64)
    probs = np.clip(0.3 * targets + 0.7 * rng.random((500, 3)), 0, 1)
    report = choose_thresholds(probs, targets, 0.45, CLASSES)
    chosen = report.thresholds_for_predict()
    assert report.chosen_score == pytest.approx(sklearn_f1(targets, probs, chosen), abs=1e-12)
    per_class = report.per_class_thresholds
    assert report.per_class_score == pytest.approx(sklearn_f1(targets, probs, per_class), abs=1e-12)
    assert report.to_dict() == choose_thresholds(probs, targets, 0.45, CLASSES).to_dict()


def test_report_round_trips_through_a_readable_json_file(tmp_path):
    probs, targets = separable([0.3, 0.7, 0.5], positives={2: 12})
    report = choose_thresholds(probs, targets, 0.5, CLASSES)
    path = report.save(tmp_path / "cv" / "thresholds.json")
    assert ThresholdReport.load(path) == report
    assert [p.name for p in path.parent.iterdir()] == ["thresholds.json"]
    text = path.read_text()
    assert text.startswith('{\n  "use": "per_class",')
    written = json.loads(text)
    assert list(written["per_class"]["thresholds"]) == CLASSES
    assert written["kept_global"] == ["scab"]
    assert written["positives"]["scab"] == 12


def test_thresholds_for_predict_refuses_another_vocabulary():
    report = choose_thresholds(*separable([0.3, 0.7, 0.5]), 0.5, CLASSES)
    assert report.thresholds_for_predict(CLASSES) == report.per_class_thresholds
    with pytest.raises(DataError, match="tuned for classes"):
        report.thresholds_for_predict(["rust", "healthy", "scab"])


def _edit(data, dotted, value):
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    if value is None:
        del data[last]
    else:
        data[last] = value


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("use", None, "missing field 'use'"),
        ("use", "best", "use must be one of"),
        ("global.threshold", 1.5, r"within \[0, 1\]"),
        ("global.threshold", "0.3", "'global.threshold' must be a number"),
        ("per_class.thresholds", {"healthy": 0.3}, "'per_class.thresholds' has keys"),
        ("per_class.thresholds.rust", None, "'per_class.thresholds' has keys"),
        ("n_images", 2.5, "whole number"),
    ],
)
def test_load_names_the_file_and_the_bad_field(tmp_path, field, value, message):
    report = choose_thresholds(*separable([0.3, 0.7, 0.5], n=200), 0.5, CLASSES)
    data = report.to_dict()
    _edit(data, field, value)
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as raised:
        ThresholdReport.load(path)
    assert str(raised.value).startswith(f"{path}: ")


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_load_rejects_a_missing_or_non_report_file(tmp_path, content):
    path = tmp_path / "thresholds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=re.escape(str(path))):
        ThresholdReport.load(path)


@pytest.mark.parametrize(
    "probs, targets, message",
    [
        (np.zeros((5, 3)), np.zeros((5, 2)), "differ in shape"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "no OOF rows"),
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.full((5, 3), np.nan), np.zeros((5, 3)), "NaN"),
        (np.zeros((5, 3)), np.full((5, 3), 2), "only 0 and 1"),
    ],
)
def test_tuning_rejects_bad_inputs(probs, targets, message):
    for tune in (tune_global, tune_per_class):
        with pytest.raises(ValueError, match=message):
            tune(probs, targets)
    with pytest.raises(ValueError, match=message):
        choose_thresholds(probs, targets, 0.5, CLASSES)


def test_tuning_rejects_a_bad_grid_and_class_list():
    probs, targets = separable([0.3, 0.7, 0.5], n=100)
    with pytest.raises(ValueError, match="non-empty"):
        tune_global(probs, targets, grid=[])
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        tune_global(probs, targets, grid=[0.5, 1.2])
    with pytest.raises(ValueError, match="2 class names for 3 probability columns"):
        choose_thresholds(probs, targets, 0.5, CLASSES[:2])
    with pytest.raises(ValueError, match=r"threshold must be within \[0, 1\]"):
        choose_thresholds(probs, targets, 1.5, CLASSES)
