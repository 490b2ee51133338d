"""Write predictions as a Kaggle submission (``image,labels``), atomically.

The file appears only when every test image has been predicted: rows go to a temporary file in
the same folder, which is renamed over the target at the end. An interrupted run leaves nothing.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from .metrics import decode, labels_to_text


def write_csv_atomically(
    path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path:
    """Write ``rows`` under ``header`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as tmp:
            writer = csv.writer(tmp)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


class SubmissionWriter(BasePredictionWriter):
    """Collects ``predict_step`` outputs and writes the submission CSV at the end of predict.

    Args:
        path: where to write the submission (``submission.csv`` in the current folder).
        threshold: decoding threshold; ``None`` uses the model's ``threshold`` hyper-parameter.
        probabilities_path: optionally also write per-class probabilities (for ensembling).
    """

    def __init__(
        self,
        path: str = "submission.csv",
        threshold: float | None = None,
        probabilities_path: str | None = None,
    ) -> None:
        super().__init__(write_interval="epoch")
        self.path = path
        self.threshold = threshold
        self.probabilities_path = probabilities_path

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        if not trainer.is_global_zero or not predictions:
            return
        ids = [name for batch in predictions for name in batch["id"]]
        probs = torch.cat([batch["probs"] for batch in predictions]).cpu().numpy()
        classes = list(pl_module.classes)
        threshold = pl_module.hparams.threshold if self.threshold is None else self.threshold
        labels = labels_to_text(decode(probs, threshold), classes)
        write_csv_atomically(self.path, ["image", "labels"], list(zip(ids, labels)))
        if self.probabilities_path:
            rows = [[name, *np.round(row, 6).tolist()] for name, row in zip(ids, probs)]
            write_csv_atomically(self.probabilities_path, ["image", *classes], rows)
