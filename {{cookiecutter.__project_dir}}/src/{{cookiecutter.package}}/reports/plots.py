"""Every figure of the data and of a run, for the notebooks and ``report``: matplotlib
``Figure``s built without pyplot, so they need no display (``save_figure`` writes a PNG)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..utils.atomic import atomic_write
from ..labels import Sample, encode_labels, label_vocabulary
from ..layout import TRAIN_IMAGES
from .. import metrics
from ..metrics import decode, per_class_f1
from .run_logs import MetricLog, Predictions

DPI = 80
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)


def label_counts(samples: Sequence[Sample]) -> Figure:
    """How many images carry each label (an image with two labels counts for both)."""
    counts = Counter(label for sample in samples for label in sample.labels)
    bars = sorted(counts.items(), key=lambda item: item[1])
    figure, axes = _count_bars(bars, 6.0, 0.35, "tab:green")
    axes.set_title(f"Label counts ({len(samples)} images)")
    return figure


def label_cooccurrence(samples: Sequence[Sample]) -> Figure:
    """Images carrying both labels of a pair; the diagonal counts each label alone or not."""
    classes = label_vocabulary(samples)
    onehot = encode_labels(samples, classes).astype(np.int64)
    matrix = onehot.T @ onehot
    size = 0.6 * len(classes) + 2.5
    figure, axes = _figure(size + 1.0, size)
    image = axes.imshow(matrix, cmap="Greens")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    for (row, column), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        axes.text(column, row, str(value), ha="center", va="center", fontsize=8, color=color)
    figure.colorbar(image, ax=axes, shrink=0.8, label="images")
    axes.set_title("Label co-occurrence")
    return figure


def label_set_counts(samples: Sequence[Sample], top: int = 15) -> Figure:
    """The ``top`` most frequent label sets (what the model must predict as a whole)."""
    counts = Counter(" ".join(sorted(sample.labels)) for sample in samples)
    figure, axes = _count_bars(counts.most_common(top)[::-1], 7.0, 0.32, "tab:olive")
    axes.set_title(f"Label sets: {min(top, len(counts))} most frequent of {len(counts)}")
    return figure


def image_grid(
    data_dir: str | Path, samples: Sequence[Sample], count: int = 12, seed: int = 0
) -> Figure:
    """``count`` training images drawn at random (seeded), each titled with its labels."""
    from ..images import load_image

    chosen = random.Random(seed).sample(list(samples), min(count, len(samples)))
    columns = min(4, len(chosen))
    rows = -(-len(chosen) // columns)
    figure, grid = _figure(2.6 * columns, 2.6 * rows, rows, columns, squeeze=False)
    for axes, sample in itertools.zip_longest(grid.flat, chosen):
        axes.axis("off")
        if sample is None:
            continue
        image = load_image(Path(data_dir) / TRAIN_IMAGES / sample.image, 160)
        image.thumbnail((160, 160))
        axes.imshow(np.asarray(image))
        axes.set_title("\n".join(sample.labels), fontsize=8)
    figure.suptitle("Sample training images and their labels")
    return figure


def conflicting_duplicates(
    data_dir: str | Path, groups: Sequence[Sequence[Sample]], most: int = 10, per_row: int = 4
) -> Figure:
    """The first ``most`` groups of duplicate images whose labels conflict, one row each: its
    images side by side (``per_row`` at most), each titled with its name and labels."""
    from ..images import load_image

    shown = groups[:most]
    columns = max([min(len(group), per_row) for group in shown], default=1)
    figure, grid = _figure(2.6 * columns, 2.4 * max(len(shown), 1), max(len(shown), 1), columns)
    grid = np.array(grid, dtype=object).reshape(max(len(shown), 1), columns)
    for row, group in itertools.zip_longest(grid, shown, fillvalue=()):
        for axes, sample in itertools.zip_longest(row, group[:per_row]):
            axes.axis("off")
            if sample is not None:
                image = load_image(Path(data_dir) / TRAIN_IMAGES / sample.image, 160)
                image.thumbnail((160, 160))
                axes.imshow(np.asarray(image))
                axes.set_title(f"{sample.image}\n{' '.join(sample.labels)}", fontsize=8)
    figure.suptitle(f"Duplicates with conflicting labels: {len(shown)} of {len(groups)} groups")
    return figure


def image_sizes(data_dir: str | Path, samples: Sequence[Sample]) -> Figure:
    """Width against height of the training images (file headers only); ``DataError`` naming
    the first one unreadable or larger than training accepts."""
    from ..prep.image_checks import check_image_header

    sizes = Counter(check_image_header(Path(data_dir) / TRAIN_IMAGES / s.image) for s in samples)
    figure, axes = _figure(5.5, 4.5)
    widths, heights = zip(*sizes) if sizes else ((), ())
    counts = np.array(list(sizes.values()))
    axes.scatter(widths, heights, s=20 + 200 * counts / max(counts.max(), 1), alpha=0.6)
    for (width, height), number in sizes.most_common(5):
        label = f"{width}x{height}: {number}"
        axes.annotate(label, (width, height), (4, 4), textcoords="offset points", fontsize=8)
    axes.set(xlabel="width (px)", ylabel="height (px)")
    axes.set_title(f"Image sizes ({len(sizes)} distinct)")
    return figure


def training_curves(logs: Sequence[MetricLog]) -> Figure:
    """Loss (train and validation) and the metric (``val/f1``) per epoch, a line per log."""
    figure, (loss_axes, f1_axes) = _figure(10.0, 4.0, 1, 2)
    several, metric = len(logs) > 1, metrics.logged_key()
    for log in logs:
        prefix = f"{log.name}: " if several else ""
        for key, style in (("train/loss_epoch", "-"), ("val/loss", "--")):
            epochs, values = log.series(key)
            if len(values):
                loss_axes.plot(epochs, values, style, marker=".", label=f"{prefix}{key}")
        epochs, values = log.series(metric)
        if len(values):
            f1_axes.plot(epochs, values, marker=".", label=f"{prefix}{metric}")
    loss_axes.set(title="Loss", xlabel="epoch", ylabel="BCE loss (log scale)", yscale="log")
    f1_axes.set(title=f"Validation {metrics.NAME}", xlabel="epoch", ylabel=metric, ylim=(0.0, 1.0))
    for axes in (loss_axes, f1_axes):
        if axes.lines:
            axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    return figure


def per_class_f1_figure(predictions: Predictions) -> Figure:
    """F1 of each class on the held-out images, at the run's threshold (and a tuned one)."""
    classes = predictions.classes
    figure, axes = _figure(7.0, 0.4 * len(classes) + 1.5)
    positions = np.arange(len(classes))
    thresholds = [("threshold", predictions.threshold)]
    if predictions.tuned_threshold is not None:
        thresholds.append(("tuned threshold", predictions.tuned_threshold))
    height = 0.8 / len(thresholds)
    for number, (name, threshold) in enumerate(thresholds):
        predicted = decode(predictions.probs, threshold)
        overall = metrics.score(predictions.targets, predicted)
        label = f"{name} {threshold:.2f} ({metrics.NAME} {overall:.3f})"
        scores = per_class_f1(predictions.targets, predicted)
        axes.barh(positions + number * height, scores, height=height, label=label)
    positives = predictions.targets.sum(axis=0)
    axes.set_yticks(
        positions + height * (len(thresholds) - 1) / 2,
        [f"{name} ({count})" for name, count in zip(classes, positives)],
    )
    axes.set(xlim=(0.0, 1.0), xlabel="F1 (positives in brackets)")
    axes.set_title(f"Per-class F1: {predictions.source}", fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    return figure


def f1_threshold_figure(predictions: Predictions) -> Figure:
    """The metric and each class's F1 against one decision threshold for every class."""
    figure, axes = _figure(8.0, 4.5)
    decoded = [decode(predictions.probs, threshold) for threshold in THRESHOLDS]
    overall = [metrics.score(predictions.targets, predicted) for predicted in decoded]
    by_class = np.array([per_class_f1(predictions.targets, predicted) for predicted in decoded])
    for column, name in enumerate(predictions.classes):
        axes.plot(THRESHOLDS, by_class[:, column], linewidth=1, alpha=0.6, label=name)
    axes.plot(THRESHOLDS, overall, color="black", linewidth=2.5, label=metrics.NAME)
    axes.axvline(predictions.threshold, color="grey", linestyle="--", label="run threshold")
    if predictions.tuned_threshold is not None:
        axes.axvline(predictions.tuned_threshold, color="red", linestyle=":", label="tuned")
    axes.set(xlabel="decision threshold", ylabel="F1", ylim=(0.0, 1.02), xlim=(0.0, 1.0))
    axes.set_title(f"{metrics.NAME} and F1 by threshold: {predictions.source}", fontsize=10)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.grid(alpha=0.3)
    return figure


def cv_vs_lb(points: Sequence[tuple[float, float, str]]) -> Figure:
    """The ledger's submitted runs: CV score against public leaderboard score, each point named
    by its run id, with the line LB = CV."""
    figure, axes = _figure(6, 5)
    cv, lb = [p[0] for p in points], [p[1] for p in points]
    axes.scatter(cv, lb, color="tab:blue")
    low, high = min(cv + lb), max(cv + lb)
    for x, y, run_id in points:
        right = x > (low + high) / 2  # labels point inwards, so none runs off the axes
        offset = (-3 if right else 3, 3)
        axes.annotate(
            run_id,
            (x, y),
            fontsize=7,
            xytext=offset,
            textcoords="offset points",
            ha="right" if right else "left",
        )
    axes.plot([low, high], [low, high], color="grey", linestyle="--", label="LB = CV")
    axes.set_xlabel(f"CV {metrics.NAME} (pooled out-of-fold)")
    axes.set_ylabel(f"public LB {metrics.NAME}")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG (atomically: never a half-written file); returns the path."""
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def _figure(width: float, height: float, rows: int = 1, columns: int = 1, **options: Any) -> Any:
    """A figure and its axes (``Figure.subplots``), laid out so that long tick labels fit."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return figure, figure.subplots(rows, columns, **options)


def _count_bars(bars: list[tuple[str, int]], width: float, per_bar: float, color: str) -> Any:
    """Horizontal bars of (name, image count) pairs, bottom up, each with its count at its end."""
    figure, axes = _figure(width, per_bar * len(bars) + 1.2)
    axes.barh([name for name, _ in bars], [count for _, count in bars], color=color)
    for position, (_, count) in enumerate(bars):
        axes.text(count, position, f" {count}", va="center", fontsize=8)
    axes.set_xlabel("images")
    return figure, axes
