"""Write predictions as a Kaggle submission (``image,labels``) and per-class probabilities: a
file appears only when every test image has been predicted, and whole (``utils.atomic``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from ..utils.atomic import write_csv
from ..utils.errors import DataError
from ..metrics import decode, labels_to_text


def write_submission(path: str | Path, ids: Sequence[str], labels: Sequence[str]) -> Path:
    """The Kaggle submission: ``image,labels`` per image, atomically."""
    return write_csv(path, ["image", "labels"], zip(ids, labels))


def write_probabilities(
    path: str | Path,
    ids: Sequence[str],
    probs: np.ndarray,
    classes: Sequence[str],
    fold: int | None = None,
) -> Path:
    """``image,[fold,]<class>...`` per image, rounded to 6 decimals (for ensembling), atomically."""
    folds = [] if fold is None else [fold]
    rows = [[name, *folds, *np.round(row, 6).tolist()] for name, row in zip(ids, probs)]
    return write_csv(path, ["image", *(["fold"] if folds else []), *classes], rows)


def read_probabilities(path: str | Path, classes: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Ids and probabilities of a file ``write_probabilities`` wrote (``oof.csv`` too), with the
    columns ``classes``; ``DataError`` naming the file and the first bad row or column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        first = 2 if header[1:2] == ["fold"] else 1
        if header[:1] != ["image"] or header[first:] != list(classes):
            raise DataError(
                f"{path}: columns {header}, expected image,[fold,]{','.join(classes)} (another"
                " label vocabulary?)"
            )
        ids, rows = [], []
        for number, row in enumerate(reader, start=2):
            try:
                values = [float(value) for value in row[first:]]
            except ValueError:
                values = []
            if (
                len(row) != len(header)
                or len(values) != len(classes)
                or not all(0.0 <= v <= 1.0 for v in values)
            ):
                raise DataError(f"{path}: row {number}: expected {len(classes)} numbers in [0, 1]")
            ids.append(row[0])
            rows.append(values)
    return ids, np.array(rows, dtype=np.float64).reshape(len(rows), len(classes))


class SubmissionWriter(BasePredictionWriter):
    """Write the submission at the end of predict: every test image once, in file-name order.

    Predictions of all devices are gathered (a distributed sampler's repeats dropped); a run that
    missed an image writes nothing. Decodes at the model's ``threshold``.

    Args:
        path: where to write the submission (``submission.csv`` in the current folder).
        probabilities_path: optionally also write per-class probabilities (for ensembling).
    """

    def __init__(self, path: str = "submission.csv", probabilities_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path = path
        self.probabilities_path = probabilities_path

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        ids = [name for batch in predictions for name in batch["id"]]
        probs = np.zeros((0, 0), dtype=np.float32)
        if predictions:
            probs = torch.cat([batch["probs"] for batch in predictions]).float().cpu().numpy()
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if trainer.world_size > 1 and distributed:  # gather the predictions of every process
            shares: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(shares, (ids, probs))
            ids = [name for share_ids, _ in shares for name in share_ids]
            probs = np.concatenate([p for _, p in shares if len(p)]) if ids else probs
        if not trainer.is_global_zero:
            return
        expected = getattr(getattr(trainer, "datamodule", None), "predict_set", None)
        ids, probs = one_row_per_image(ids, probs, getattr(expected, "names", None))
        classes: list[str] = list(getattr(pl_module, "classes"))
        labels = labels_to_text(decode(probs, pl_module.hparams["threshold"]), classes)
        write_submission(self.path, ids, labels)
        if self.probabilities_path:
            write_probabilities(self.probabilities_path, ids, probs, classes)


def one_row_per_image(
    ids: Sequence[str], probs: np.ndarray, expected: Sequence[str] | None
) -> tuple[list[str], np.ndarray]:
    """One row per image in ``expected`` order; ``DataError`` if any expected image is missing."""
    first = {name: row for row, name in reversed(list(enumerate(ids)))}  # a repeat's first row
    order = sorted(first) if expected is None else list(expected)
    missing = [name for name in order if name not in first]
    if missing:
        raise DataError(
            f"predicted {len(order) - len(missing)} of {len(order)} test images (first missing:"
            f" {missing[0]}); a submission must cover them all, so none was written"
            " (is --trainer.limit_predict_batches or fast_dev_run set?)"
        )
    return order, probs[[first[name] for name in order]]
