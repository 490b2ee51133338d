"""Blends of cv folders (a teacher and its ``distill`` student, or any runs of one data set):
``predict --ckpt_path A,B --blend 0.6,0.4`` and ``package A,B OUT --blend 0.6,0.4``. A blend's
probability is the weighted mean of its folders' (each folder's folds averaged first); it decodes
at thresholds tuned on the same weighted mean of the folders' ``oof.csv``, against the labels of
the ``train.csv`` the first folder was trained on (its ``fit_config.yaml``'s ``data.data_dir``)."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import encode_labels, read_train_csv
from ..layout import TRAIN_CSV
from ..thresholds import choose_thresholds
from ..utils.errors import DataError
from ..workflows.cv_files import (
    FIT_CONFIG,
    OOF,
    THRESHOLDS,
    fold_checkpoints,
    is_cv_folder,
    read_plan,
)
from .submission import read_probabilities
from .threshold_report import ThresholdReport

SEPARATOR = ","


@dataclass(frozen=True)
class Blend:
    """Two or more cv folders and their weights (non-negative, summing to 1)."""

    folders: list[Path]
    weights: list[float]

    def members(self) -> list[tuple[int, Path, float]]:
        """(folder index, fold checkpoint, its weight: its folder's weight / the folder's folds)
        of every folder; ``DataError`` if a fold is missing."""
        found = []
        for index, (folder, weight) in enumerate(zip(self.folders, self.weights)):
            folds = fold_checkpoints(folder)
            found += [(index, path, weight / len(folds)) for path in folds]
        return found

    def checkpoints(self) -> tuple[list[Path], list[float]]:
        """Every folder's fold checkpoints and their weights (``members``)."""
        members = self.members()
        return [path for _, path, _ in members], [weight for _, _, weight in members]

    def oof(self) -> tuple[list[str], list[str], np.ndarray]:
        """Images, classes and the weighted mean of the folders' pooled out-of-fold probabilities;
        ``DataError`` if a folder has another label vocabulary or other images."""
        classes = list(read_plan(self.folders[0])["classes"])
        images: list[str] = []
        mean = np.zeros(0)
        for index, (folder, weight) in enumerate(zip(self.folders, self.weights)):
            ids, probs = read_probabilities(folder / OOF, classes)
            if index and ids != images:
                raise DataError(
                    f"{folder / OOF}: predicts other images than {self.folders[0] / OOF}: a blend"
                    " needs cv folders of one data set"
                )
            images, mean = ids, mean + weight * probs if index else weight * probs
        return images, classes, mean

    def thresholds(self, truth: np.ndarray | None = None) -> ThresholdReport:
        """Thresholds tuned on ``oof()`` against ``truth`` (multi-hot, in ``oof()`` order; default:
        the labels in the first folder's data folder) from its default threshold."""
        images, classes, probs = self.oof()
        first = self.folders[0]
        if truth is None:
            truth = training_labels(first, images, classes)
        default = ThresholdReport.load(first / THRESHOLDS).default_threshold
        return choose_thresholds(probs, truth, default, classes)


def parse_sources(text: str) -> list[Path]:
    """The paths of ``A,B,...`` (a path that exists as typed is one, commas and all)."""
    if Path(text).exists() or SEPARATOR not in text:
        return [Path(text)]
    return [Path(part) for part in text.split(SEPARATOR)]


def parse_blend(option: str, sources: list[Path], weights: str | None) -> Blend | None:
    """The blend of ``sources`` (cv folders) with ``weights`` (``"0.6,0.4"``; ``None``: equal),
    or ``None`` for one source without weights; ``option`` names the sources in errors."""
    if len(sources) == 1 and weights is None:
        return None
    named = f"{option} {SEPARATOR.join(map(str, sources))}"
    if len(sources) == 1:
        raise DataError(f"--blend {weights}: a blend needs two cv folders or more in {named}")
    for folder in sources:
        if not is_cv_folder(folder):
            raise DataError(f"{named}: {folder} is not a cv folder (a blend member must be one)")
    values = [1.0] * len(sources) if weights is None else blend_weights(weights)
    if len(values) != len(sources):
        raise DataError(f"--blend {weights}: {len(values)} weights for {len(sources)} folders")
    total = sum(values)
    if total <= 0:
        raise DataError(f"--blend {weights}: the weights are all zero")
    return Blend(list(sources), [value / total for value in values])


def blend_weights(text: str) -> list[float]:
    """``"0.6,0.4"`` as numbers, each finite and at least 0; ``DataError`` naming a bad one."""
    values = []
    for part in text.split(SEPARATOR):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise DataError(f"--blend {text}: {part!r} is not a weight (a number of 0 or more)")
        values.append(value)
    return values


def training_labels(folder: Path, images: list[str], classes: list[str]) -> np.ndarray:
    """Multi-hot labels of ``images`` from the ``train.csv`` ``folder`` (a cv folder) used."""
    yaml: Any = importlib.import_module("yaml")
    try:
        config = yaml.safe_load((folder / FIT_CONFIG).read_text(encoding="utf-8"))
        train_csv = Path(config["data"]["data_dir"]) / TRAIN_CSV
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DataError(
            f"{folder / FIT_CONFIG}: no data folder to read the labels from"
            f" ({type(exc).__name__}); pass --model.threshold"
        ) from None
    if not train_csv.is_file():
        raise DataError(
            f"{train_csv}: not found; the blend's thresholds are tuned on the labels of the data"
            f" {folder} was trained on (or pass --model.threshold)"
        )
    by_name = {sample.image: sample for sample in read_train_csv(train_csv)}
    missing = [name for name in images if name not in by_name]
    if missing or len(by_name) != len(images):
        raise DataError(
            f"{train_csv}: not the data set {folder} was trained on ({len(by_name)} images,"
            f" {len(images)} predicted out of fold)"
        )
    return encode_labels([by_name[name] for name in images], classes).astype(np.int64)
