"""Checkpoints you can trust: the newest model in ``last.ckpt``, whole files only, one run a folder.

- ``EpochCheckpoint`` rewrites ``last.ckpt`` at the end of every epoch, whether or not the
  monitored metric improved or validation ran in that epoch (Lightning's ``ModelCheckpoint``
  rewrites it only in epochs that saved a top-k file, so after a plateau ``last.ckpt`` held an
  old epoch). A run killed at any moment resumes from its last finished epoch with
  ``--ckpt_path last``.
- ``AtomicCheckpointIO`` writes each checkpoint to a temporary file in the target folder and
  renames it into place: a reader, or a run killed mid-write, sees the old file or the new one,
  never a truncated one (Lightning's default stages in the system temp folder, and when that is
  another filesystem the final move is a plain copy onto the target). A full disk is one line
  naming the checkpoint (``torchfiles.save_torch_file``).
- ``refuse_earlier_run`` stops a second ``fit`` from mixing its checkpoints with an earlier run's.
- ``resolve_ckpt_path`` turns ``last`` / ``best`` into files, with one-line errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from ..utils.errors import DataError
from ..utils.torchfiles import load_torch_file, save_torch_file

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes whole files only and unpickles no code when loading."""

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
        if map_location is None:
            return super().load_checkpoint(path, weights_only=weights_only is not False)
        return super().load_checkpoint(
            path, map_location=map_location, weights_only=weights_only is not False
        )


class EpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is rewritten at the end of every epoch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_written_step = -1

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_step = trainer.global_step

    def _save_last_if_stale(self, trainer: pl.Trainer) -> None:
        if (
            self.save_last
            and not getattr(trainer, "fast_dev_run", False)
            and not trainer.sanity_checking
            and trainer.state.fn == "fit"
            and self._last_written_step != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Also when validation saves instead: it does not run in every epoch
        # (check_val_every_n_epoch > 1), and a mid-epoch one saved an earlier step.
        self._save_last_if_stale(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning would write last.ckpt here even under fast_dev_run, which saves nothing else.
        if not getattr(trainer, "fast_dev_run", False):
            super().on_train_end(trainer, pl_module)


def checkpoint_files(dirpath: str | Path) -> list[Path]:
    """The ``*.ckpt`` files directly in ``dirpath`` (none when it does not exist)."""
    folder = Path(dirpath)
    return sorted(folder.glob("*.ckpt")) if folder.is_dir() else []


def refuse_earlier_run(dirpath: str | Path, ckpt_path: str | None) -> None:
    """``DataError`` if ``dirpath`` holds checkpoints of another run than the one resumed.

    A new ``fit`` into a folder that already has checkpoints would leave ``last.ckpt`` and
    ``best-*.ckpt`` of two runs side by side. Resuming one of them (``--ckpt_path`` a file in
    that folder, or ``last``) is the one way to train into it again.
    """
    existing = checkpoint_files(dirpath)
    if not existing:
        return
    if ckpt_path and Path(ckpt_path).resolve().parent == Path(dirpath).resolve():
        return
    names = ", ".join(p.name for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
    raise DataError(
        f"{dirpath}: holds the checkpoints of an earlier run ({names}); resume it with"
        " --ckpt_path last, train into another folder with --checkpoint.dirpath DIR,"
        " or delete it"
    )


def resolve_ckpt_path(ckpt_path: str, dirpath: str | Path) -> str:
    """``last`` -> ``DIRPATH/last.ckpt``, ``best`` -> the best file it records; else unchanged."""
    folder = Path(dirpath)
    if ckpt_path not in ("last", "best"):
        return ckpt_path
    last = folder / LAST
    if not last.is_file():
        raise DataError(
            f"--ckpt_path {ckpt_path}: no {last} (train first, or pass a checkpoint file)"
        )
    if ckpt_path == "last":
        return str(last)
    best = inspect_checkpoint(last).best_model_path
    if best is None or not Path(best).is_file():
        raise DataError(
            f"--ckpt_path best: {last} records no best checkpoint that still exists"
            f" ({best or 'none recorded'}); pass a checkpoint file"
        )
    return best


@dataclass(frozen=True)
class CheckpointInfo:
    """What the CLI needs to know about a checkpoint before Lightning loads it."""

    classes: list[str]
    dirpath: str | None  # the folder its run saved checkpoints into
    best_model_path: str | None  # the best checkpoint that run had saved so far
    best_model_score: float | None  # its monitored value (metrics.logged_key())
    hyper_parameters: dict[str, Any]  # the model's, as saved (check them before use)


def inspect_checkpoint(ckpt_path: str | Path) -> CheckpointInfo:
    """Read a checkpoint's label vocabulary and its run's checkpoint records.

    ``DataError`` if the file is missing, unreadable or has no ``classes`` hyper-parameter.
    """
    checkpoint = load_torch_file(ckpt_path, "checkpoint")
    if not isinstance(checkpoint, dict):
        raise DataError(f"{ckpt_path}: not a Lightning checkpoint")
    hyper_parameters = checkpoint.get("hyper_parameters")
    classes = hyper_parameters.get("classes") if isinstance(hyper_parameters, dict) else None
    if not classes:
        raise DataError(f"{ckpt_path}: checkpoint has no 'classes' hyper-parameter")
    record: dict[str, Any] = {}
    for key, value in (checkpoint.get("callbacks") or {}).items():
        if str(key).startswith(("ModelCheckpoint", "EpochCheckpoint")) and isinstance(value, dict):
            record = value
            break
    return CheckpointInfo(
        classes=list(classes),
        dirpath=record.get("dirpath") or None,
        best_model_path=record.get("best_model_path") or None,
        best_model_score=_as_float(record.get("best_model_score")),
        hyper_parameters=dict(hyper_parameters or {}),
    )


def _as_float(value: Any) -> float | None:
    """A recorded score (a 0-d tensor in Lightning's state) as a float."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
