"""Checkpoints you can trust: the newest model in ``last.ckpt`` (a killed run resumes from its
last finished epoch with ``--ckpt_path last``), whole files only, one run a folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins import TorchCheckpointIO

from ..predict.inference import Checkpoint, read_checkpoint
from ..utils.errors import DataError
from ..utils.torchfiles import save_torch_file

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` writing whole files only (``save_torch_file``), unpickling no code;
    ``preloaded``, a checkpoint the CLI has read, is what Lightning's load of that file returns."""

    def __init__(self, preloaded: Checkpoint | None = None) -> None:
        super().__init__()
        self.preloaded = preloaded

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_torch_file(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load tensors and plain data only, unless ``--weights_only false`` asks otherwise."""
        preloaded, safe = self.preloaded, weights_only is not False
        if safe and preloaded and Path(path).resolve() == preloaded.path.resolve():
            self.preloaded = None
            return preloaded.content
        located = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=safe, **located)


class EpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is rewritten at the end of every epoch (Lightning
    2.6's rewrites it only in epochs that saved a top-k file and has no setting for this: the
    overrides use its private ``_save_last_checkpoint`` and ``_monitor_candidates``)."""

    last_written_step = -1

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self.last_written_step = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # After this epoch's validation, if any: it does not run in every epoch
        # (check_val_every_n_epoch > 1), and a mid-epoch one saved an earlier step.
        stale = self.last_written_step != trainer.global_step
        if self.save_last and stale and not getattr(trainer, "fast_dev_run", False):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning would write last.ckpt here even under fast_dev_run, which saves nothing else.
        if not getattr(trainer, "fast_dev_run", False):
            super().on_train_end(trainer, pl_module)


def refuse_earlier_run(dirpath: str | Path, ckpt_path: str | None) -> None:
    """``DataError`` if ``dirpath`` holds checkpoints of another run than the one resumed
    (``--ckpt_path`` a file in that folder, or ``last``): two runs' files would mix."""
    folder = Path(dirpath)
    existing = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
    if not existing or (ckpt_path and Path(ckpt_path).resolve().parent == folder.resolve()):
        return
    names = ", ".join(p.name for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
    raise DataError(
        f"{dirpath}: holds the checkpoints of an earlier run ({names}); resume it with"
        " --ckpt_path last, train into another folder with --checkpoint.dirpath DIR,"
        " or delete it"
    )


def resolve_ckpt_path(ckpt_path: str, dirpath: str | Path) -> str:
    """``last`` -> ``DIRPATH/last.ckpt``, ``best`` -> the best file it records."""
    last = Path(dirpath) / LAST
    if not last.is_file():
        raise DataError(
            f"--ckpt_path {ckpt_path}: no {last} (train first, or pass a checkpoint file)"
        )
    if ckpt_path == "last":
        return str(last)
    best = read_checkpoint(last).record.get("best_model_path")
    if not best or not Path(best).is_file():
        raise DataError(
            f"--ckpt_path best: {last} records no best checkpoint that still exists"
            f" ({best or 'none recorded'}); pass a checkpoint file"
        )
    return str(best)
