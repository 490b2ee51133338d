"""The labels: ``train.csv`` (columns ``image,labels``, ``labels`` a space-separated list of names),
refused with one line naming the row where it would silently train on wrong labels; the label
vocabulary, read from it (sorted), never hard-coded; and the multi-hot encoding."""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .utils.errors import DataError
from .layout import TRAIN_CSV


@dataclass(frozen=True)
class Sample:
    """One row of ``train.csv``: the image file name and its label names."""

    image: str
    labels: tuple[str, ...]


def read_train_csv(path: str | Path) -> list[Sample]:
    """Parse and validate a Kaggle ``image,labels`` CSV; raise ``DataError`` naming the bad row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the competition's {TRAIN_CSV})")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        if not columns:
            raise DataError(f"{path}: file is empty (expected a header 'image,labels')")
        missing = [name for name in ("image", "labels") if name not in columns]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns)}"
                " (expected 'image,labels')"
            )
        reader.fieldnames = columns
        samples: list[Sample] = []
        seen: dict[str, int] = {}
        for row_number, row in enumerate(reader, start=2):
            image = (row.get("image") or "").strip()
            labels = tuple((row.get("labels") or "").split())
            if not image:
                raise DataError(f"{path}: row {row_number}: empty 'image' field")
            if not labels:
                raise DataError(f"{path}: row {row_number} ({image}): empty 'labels' field")
            separated = [label for label in labels if any(sep in label for sep in ",;|")]
            if separated:
                raise DataError(
                    f"{path}: row {row_number} ({image}): label {separated[0]!r} holds a"
                    " separator; the 'labels' field lists names separated by spaces"
                )
            if image in seen:
                raise DataError(
                    f"{path}: row {row_number}: image {image} is listed twice"
                    f" (first on row {seen[image]})"
                )
            seen[image] = row_number
            samples.append(Sample(image, labels))
    if not samples:
        raise DataError(f"{path}: no data rows under the header")
    _refuse_spelling_variants(path, samples)
    classes = label_vocabulary(samples)
    if len(classes) < 2:  # every target and every F1 would be 1: nothing to learn or tune
        raise DataError(
            f"{path}: every row has the one label {classes[0]!r}; a multi-label model needs at"
            " least two label names (add the rows of the other classes)"
        )
    return samples


def label_key(label: str) -> str:
    """The form in which two label names are compared: NFKC, format characters removed, casefolded
    (``Scab``, ``scab`` + zero-width space and full-width ``ｓｃａｂ`` all look like ``scab``)."""
    normal = unicodedata.normalize("NFKC", label)
    visible = "".join(char for char in normal if unicodedata.category(char) != "Cf")
    return unicodedata.normalize("NFKC", visible.casefold())


def _refuse_spelling_variants(path: Path, samples: Sequence[Sample]) -> None:
    """``DataError`` naming both rows of two label names that differ only in ``label_key``."""
    first_row: dict[str, tuple[str, int]] = {}
    for row_number, sample in enumerate(samples, start=2):
        for label in sample.labels:
            where = f"{path}: row {row_number} ({sample.image})"
            key = label_key(label)
            if not key:
                raise DataError(f"{where}: label {ascii(label)} has no visible character")
            spelling, row = first_row.setdefault(key, (label, row_number))
            if spelling == label:
                continue
            if spelling.casefold() == label.casefold():
                raise DataError(
                    f"{where}: label {label!r} differs only by case from {spelling!r}"
                    f" (row {row}); use one spelling"
                )
            raise DataError(
                f"{where}: label {ascii(label)} differs from {ascii(spelling)} (row {row}) only"
                " by Unicode normalisation, invisible characters or case; use one spelling"
            )


def label_vocabulary(samples: Sequence[Sample]) -> list[str]:
    """All label names that occur in ``samples``, sorted so the order is stable."""
    return sorted({label for sample in samples for label in sample.labels})


def encode_labels(samples: Sequence[Sample], classes: Sequence[str]) -> np.ndarray:
    """Multi-hot matrix (n_samples x n_classes, float32) of ``samples`` over ``classes``."""
    index = {name: i for i, name in enumerate(classes)}
    targets = np.zeros((len(samples), len(classes)), dtype=np.float32)
    for row, sample in enumerate(samples):
        for label in sample.labels:
            if label not in index:
                raise DataError(
                    f"label {label!r} of image {sample.image} is not in {list(classes)}"
                )
            targets[row, index[label]] = 1.0
    return targets
