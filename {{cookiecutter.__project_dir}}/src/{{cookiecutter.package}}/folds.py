"""Cross-validation folds that keep identical images together, and the layout of a ``cv`` folder.

The 2021 training set holds exact duplicates (some with conflicting labels); a pair split across
folds leaks the label of a validation image into training and inflates the CV score. Files with
identical content form a group; groups, not rows, are assigned to folds by the seeded multi-label
iterative stratification (a group counts with the union of its rows' labels).

A ``cv`` folder holds ``CV_FILES`` and one ``fold{k}/`` run folder per fold holding
``FOLD_OUTPUTS``: ``clear_fold`` and ``clear_cv_folder`` remove those and nothing else.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .utils.atomic import write_csv
from .utils.errors import DataError
from .utils.hardware import available_cores
from .labels import multilabel_kfold

FOLDS_CSV = "folds.csv"
PLAN = "plan.json"
BEST = "best.ckpt"
OOF = "oof.csv"
THRESHOLDS = "thresholds.json"
SUMMARY = "cv.json"
FIT_CONFIG = "fit_config.yaml"
CV_FILES = (FOLDS_CSV, PLAN, OOF, THRESHOLDS, SUMMARY, FIT_CONFIG)
# What a fold's fit and cv write into fold{k}/: checkpoints, logs (a logger's save_dir, or
# Lightning's default logger), the config Lightning saves there when no logger has a folder.
FOLD_OUTPUTS = ("checkpoints", "logs", "lightning_logs", "config.yaml", BEST, OOF)
FOLD_NAME = re.compile(r"fold\d+")
CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def readable_digest(path: Path) -> str:
    """``file_digest``, with ``DataError`` naming the file if it cannot be read."""
    try:
        return file_digest(path)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot be read to look for identical images"
            f" ({exc.strerror or type(exc).__name__})"
        ) from None


def duplicate_groups(folder: Path, names: Sequence[str]) -> list[list[str]]:
    """Groups (two files or more) of ``names`` in ``folder`` whose bytes are identical."""
    with ThreadPoolExecutor(max_workers=max(1, available_cores())) as pool:
        digests = list(pool.map(readable_digest, (folder / name for name in names)))
    by_digest: dict[str, list[str]] = {}
    for name, digest in zip(names, digests):
        by_digest.setdefault(digest, []).append(name)
    return [sorted(group) for group in by_digest.values() if len(group) > 1]


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
    splitter = multilabel_kfold(n_folds, seed)
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


def fold_dir(out: Path, fold: int) -> Path:
    """The run folder of one fold."""
    return out / f"fold{fold}"


def written_by_cv(folder: Path, names: Sequence[str]) -> list[Path]:
    """The entries of ``names`` in ``folder``, and the temporary files ``atomic_write`` left."""
    found = [folder / name for name in names if (folder / name).exists()]
    for name in names:
        found += sorted(folder.glob(f".{name}.*.partial"))
    return found


def remove(paths: Sequence[Path]) -> None:
    """Delete files and whole folders."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def fold_leftovers(run: Path) -> list[Path]:
    """What an earlier start of this fold wrote into its run folder (``FOLD_OUTPUTS``)."""
    return written_by_cv(run, FOLD_OUTPUTS) if run.is_dir() else []


def clear_fold(run: Path) -> None:
    """Remove the fold's own outputs; the folder too when nothing else is left in it."""
    remove(fold_leftovers(run))
    if run.is_dir() and not any(run.iterdir()):
        run.rmdir()


def clear_cv_folder(out: Path) -> list[str]:
    """Remove every file ``cv`` wrote into the ``cv`` folder ``out``; return what is left there.

    Call it only on a ``cv`` folder (``is_cv_folder``): the names cv writes are common ones, and
    in another folder they are not cv's to delete.
    """
    for run in out.iterdir():
        if run.is_dir() and FOLD_NAME.fullmatch(run.name):
            clear_fold(run)
    remove(written_by_cv(out, CV_FILES))
    return sorted(p.name for p in out.iterdir())


def is_cv_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``cv`` (it holds ``folds.csv`` and fold models)."""
    folder = Path(path)
    return folder.is_dir() and (folder / FOLDS_CSV).is_file()


def fold_checkpoints(out: str | Path) -> list[Path]:
    """``fold{k}/best.ckpt`` of a ``cv`` folder, in fold order; ``DataError`` if one is missing."""
    out = Path(out)
    plan = read_plan(out)
    missing = [k for k in range(plan["folds"]) if not (fold_dir(out, k) / BEST).is_file()]
    if missing:
        raise DataError(
            f"{out}: fold(s) {', '.join(map(str, missing))} have no {BEST} yet; finish the cv"
            " run (run the same cv command again)"
        )
    return [fold_dir(out, k) / BEST for k in range(plan["folds"])]


def read_plan(out: Path) -> dict[str, Any]:
    """The ``plan.json`` of a ``cv`` folder; ``DataError`` if it is missing or damaged."""
    try:
        plan = json.loads((out / PLAN).read_text())
        int(plan["folds"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{out / PLAN}: missing or damaged ({type(exc).__name__})") from None
    return dict(plan)


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
    return np.flatnonzero(assigned != fold), np.flatnonzero(assigned == fold)
