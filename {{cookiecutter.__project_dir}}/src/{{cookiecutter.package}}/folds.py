"""The one split of ``fit`` and ``cv``: seeded multi-label stratified folds, duplicate images
in one fold (PP2021 holds copies of one leaf: a pair split across folds leaks a validation label
into training). Groups of identical or near-duplicate files (``prep.duplicates``), not rows,
are assigned by iterative stratification (a group counts with the union of its rows' labels);
``fit`` validates on one fold of them, ``cv`` trains them all."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .utils.atomic import write_csv
from .utils.errors import DataError


@dataclass(frozen=True)
class FoldPlan:
    """The fold of every training image, and what the duplicate search found."""

    images: list[str]
    folds: np.ndarray  # one fold index per image, in ``images`` order
    duplicate_groups: list[list[str]]
    conflicting_groups: int  # duplicate groups whose rows carry different labels

    def save(self, path: str | Path) -> Path:
        """Write ``image,fold`` rows (the format ``--data.split_file`` reads)."""
        return write_csv(path, ["image", "fold"], zip(self.images, (int(f) for f in self.folds)))


def assign_folds(
    images: Sequence[str],
    targets: np.ndarray,
    n_folds: int,
    seed: int,
    groups: Sequence[Sequence[str]] = (),
) -> FoldPlan:
    """Seeded multi-label stratified folds in which each group of ``groups`` shares one fold."""
    # Imported here: the offline inference path (a Kaggle notebook without iterstrat) imports folds.
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if n_folds < 2:
        raise DataError(f"--folds {n_folds}: cross-validation needs 2 folds or more")
    group_of = {name: index for index, group in enumerate(groups) for name in group}
    keys = [group_of.get(name, f"single:{name}") for name in images]
    unique_keys = list(dict.fromkeys(keys))
    if len(unique_keys) < n_folds:
        raise DataError(f"{len(unique_keys)} distinct images are too few for {n_folds} folds")
    position = {key: index for index, key in enumerate(unique_keys)}
    rows_of_key = np.array([position[key] for key in keys])
    group_targets = np.zeros((len(unique_keys), targets.shape[1]), dtype=targets.dtype)
    np.maximum.at(group_targets, rows_of_key, targets)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of_key = np.empty(len(unique_keys), dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(unique_keys)), group_targets)):
        fold_of_key[held_out] = fold
    conflicting = sum(
        1
        for index in range(len(groups))
        if len({tuple(row) for row in targets[rows_of_key == position[index]]}) > 1
    )
    return FoldPlan(
        images=list(images),
        folds=fold_of_key[rows_of_key],
        duplicate_groups=[list(group) for group in groups],
        conflicting_groups=conflicting,
    )


def validation_split(
    images: Sequence[str],
    targets: np.ndarray,
    val_fraction: float = 0.2,
    fold: int = 0,
    seed: int = 42,
    groups: Sequence[Sequence[str]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices of ``fit``: fold ``fold`` of ``assign_folds`` held out.

    ``round(1 / val_fraction)`` folds (0.2 -> 5), so with the same seed fold ``k`` of ``fit`` is
    fold ``k`` of ``cv --folds 5``, and sweeping ``fold`` gives disjoint validation sets."""
    if not 0.0 < val_fraction <= 0.5:
        raise DataError(f"val_fraction={val_fraction} must be in (0, 0.5]")
    n_folds = round(1.0 / val_fraction)
    if not 0 <= fold < n_folds:
        raise DataError(f"fold={fold} must be in 0..{n_folds - 1} for val_fraction={val_fraction}")
    return held_out(assign_folds(images, targets, n_folds, seed, groups).folds, fold)


def held_out(folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices with fold ``fold`` of ``folds`` (one per image) held out."""
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)


def read_folds(path: str | Path) -> dict[str, int]:
    """``image -> fold`` from a ``folds.csv``; ``DataError`` naming the file and row if broken."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found (write one with the cv command)")
    folds: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"image", "fold"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the columns 'image,fold'")
        for row_number, row in enumerate(reader, start=2):
            try:
                folds[row["image"]] = int(row["fold"])
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: row {row_number}: fold {row['fold']!r} is not a number"
                ) from None
    return folds


def split_from_file(
    path: str | Path, images: Sequence[str], fold: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices of ``images`` with fold ``fold`` of a ``folds.csv`` held out."""
    folds = read_folds(path)
    missing = [name for name in images if name not in folds]
    if missing:
        raise DataError(
            f"{path}: has no fold for {len(missing)} images of train.csv (first: {missing[0]});"
            " it was written for another train.csv"
        )
    assigned = np.array([folds[name] for name in images])
    if not (assigned == fold).any():
        raise DataError(
            f"--data.fold {fold}: {path} has the folds {', '.join(map(str, sorted(set(assigned))))}"
        )
    return held_out(assigned, fold)
