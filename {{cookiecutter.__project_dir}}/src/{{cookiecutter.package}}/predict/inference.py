"""Inference with one checkpoint or a fold ensemble, with optional test-time augmentation (TTA);
``read_checkpoint`` is the one reader of a checkpoint file: once per command, pass the result on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import ImageDataset, build_transforms
from ..utils.errors import DataError
from ..utils.hardware import default_precision
from ..cli.trainer_checks import MODEL_ARGUMENTS, check_hyper_parameters
from ..models import PlantClassifier
from ..utils.torchfiles import load_torch_file
from .tta import TTA_VIEWS, check_tta, tta_views

CHECKPOINT_CALLBACKS = ("ModelCheckpoint", "EpochCheckpoint")
HIDDEN_TEST_IMAGES = 5000


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file as ``read_checkpoint`` read it: its path and its contents."""

    path: Path
    content: dict[str, Any]

    @property
    def hyper_parameters(self) -> dict[str, Any]:
        """The model's hyper-parameters as saved (``check_hyper_parameters`` before use)."""
        return dict(self.content["hyper_parameters"])

    @property
    def record(self) -> dict[str, Any]:
        """The state of the run's checkpoint callback: ``dirpath``, ``best_model_path``..."""
        for key, value in (self.content.get("callbacks") or {}).items():
            if str(key).startswith(CHECKPOINT_CALLBACKS) and isinstance(value, dict):
                return value
        return {}

    @property
    def best_model_score(self) -> float | None:
        """The monitored value (``metrics.logged_key()``) of the best checkpoint its run saved."""
        score = self.record.get("best_model_score")
        return None if score is None else float(score)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint of this package (tensors and plain data only), or ``DataError``."""
    content = load_torch_file(path, "checkpoint")
    hparams = content.get("hyper_parameters") if isinstance(content, dict) else None
    if not isinstance(hparams, dict) or not hparams.get("classes"):
        raise DataError(f"{path}: not a checkpoint of this package (no backbone or classes)")
    if not isinstance(content.get("state_dict"), dict):
        raise DataError(f"{path}: not a checkpoint of this package (no weights: state_dict)")
    return Checkpoint(Path(path), content)


def load_classifier(checkpoint: str | Path | Checkpoint) -> tuple[PlantClassifier, dict[str, Any]]:
    """A ``PlantClassifier`` with the weights of ``checkpoint``, and the data settings it saved;
    nothing is downloaded (``pretrained`` is off) nor imported (``check_hyper_parameters``)."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = read_checkpoint(checkpoint)
    hparams = checkpoint.hyper_parameters
    check_hyper_parameters(checkpoint.path, hparams)
    arguments = {key: value for key, value in hparams.items() if key in MODEL_ARGUMENTS}
    model = PlantClassifier(**{**arguments, "pretrained": False})
    model.load_state_dict(checkpoint.content["state_dict"])
    model.eval()
    return model, dict(checkpoint.content.get("datamodule_hyper_parameters") or {})


class EnsembleClassifier(pl.LightningModule):
    """The mean probability of several classifiers of one label vocabulary over TTA views,
    weighted by ``weights`` (one per member, a blend's; default equal)."""

    def __init__(
        self,
        members: Sequence[PlantClassifier],
        tta: str = "none",
        threshold: float | Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise DataError("an ensemble needs at least one checkpoint")
        classes = list(members[0].classes or [])
        for index, member in enumerate(members[1:], start=1):
            if list(member.classes or []) != classes:
                raise DataError(
                    f"ensemble member {index} was trained on the labels {member.classes},"
                    f" member 0 on {classes}: combine checkpoints of one label vocabulary"
                )
        weights = [1.0] * len(members) if weights is None else list(weights)
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
            raise DataError(f"ensemble weights {weights}: one per member, >= 0, not all zero")
        self.weights = [weight / sum(weights) for weight in weights]
        self.members = nn.ModuleList(members)
        self.classes = classes
        self.tta = check_tta(tta)
        self.images = 0  # predicted so far; marks: (time, images) at start, first batch, last
        self.marks: list[tuple[float, int]] = []
        chosen = members[0].hparams["threshold"] if threshold is None else threshold
        self.hparams["threshold"] = chosen if isinstance(chosen, float) else list(chosen)

    @classmethod
    def from_checkpoints(
        cls,
        checkpoints: Sequence[str | Path | Checkpoint],
        tta: str = "none",
        threshold: float | Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
    ) -> EnsembleClassifier:
        """Load every checkpoint (file or read); ``DataError`` if labels or image sizes differ."""
        read = [c if isinstance(c, Checkpoint) else read_checkpoint(c) for c in checkpoints]
        loaded = [load_classifier(checkpoint) for checkpoint in read]
        sizes = {c.path.as_posix(): d.get("image_size") for c, (_, d) in zip(read, loaded)}
        if len(set(sizes.values()) - {None}) > 1:
            described = ", ".join(f"{path}: {size}px" for path, size in sizes.items())
            raise DataError(
                f"ensemble checkpoints were trained at different image sizes ({described})"
            )
        return cls([model for model, _ in loaded], tta=tta, threshold=threshold, weights=weights)

    def setup(self, stage: str) -> None:
        for member in self.members:
            if isinstance(member, PlantClassifier) and member.hparams.get("channels_last"):
                member.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities (batch x classes): each member's mean over the TTA views, then the
        members' weighted mean."""
        views = tta_views(images, self.tta)
        probs = [
            torch.stack([torch.sigmoid(member(view).float()) for view in views]).mean(0)
            for member in self.members
        ]
        return sum(
            (weight * p for weight, p in zip(self.weights, probs)), torch.zeros_like(probs[0])
        )

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        if not self.marks:
            self.marks.append((time.monotonic(), 0))
        probs = self(batch["image"])  # uint8: each member normalises with its own statistics
        self.images += len(batch["id"])
        self.marks[2:] = [(time.monotonic(), self.images)]
        return {"id": list(batch["id"]), "probs": probs}


def predict_images(
    module: pl.LightningModule,
    folder: Path,
    names: Sequence[str],
    image_size: int,
    batch_size: int,
    num_workers: int,
    accelerator: str = "auto",
    precision: str | None = None,
    devices: int | list[int] = 1,
) -> tuple[list[str], np.ndarray]:
    """Ids and probabilities of the images ``names`` of ``folder`` (as evaluation sees them) by a
    plain Trainer on one of ``devices`` (``precision`` ``None``: the one ``predict`` picks for
    ``accelerator`` here)."""
    dataset = ImageDataset(
        folder, list(names), build_transforms(image_size, train=False), decode_size=image_size
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        precision=precision or default_precision(accelerator),  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        devices=devices,
    )
    pin_memory = trainer.strategy.root_device.type == "cuda"  # not when a GPU is present but unused
    loader = DataLoader(dataset, batch_size, num_workers=num_workers, pin_memory=pin_memory)
    predicted = trainer.predict(module, dataloaders=loader, return_predictions=True)
    outputs = cast(list[dict[str, Any]], predicted or [])
    ids = [name for batch in outputs for name in batch["id"]]
    return ids, torch.cat([batch["probs"] for batch in outputs]).float().cpu().numpy()


def images_per_second(marks: Sequence[tuple[float, int]]) -> float:
    """Images per second of an ``EnsembleClassifier``'s ``marks``, after the first batch."""
    (start, before), (end, after) = marks[-2:]
    return (after - before) / max(end - start, 1e-9)


def speed_line(ensemble: EnsembleClassifier, rate: float | None = None) -> str:
    """Images per second (``rate``, else ``ensemble``'s own) after the first (warm-up) batch, and
    what the competition's hidden test set would take at that rate."""
    rate = images_per_second(ensemble.marks) if rate is None else rate
    views = len(ensemble.members) * len(TTA_VIEWS[ensemble.tta])
    return (
        f"predicted {ensemble.images} images ({rate:.1f} img/s after the first batch,"
        f" {views} forward passes each); {HIDDEN_TEST_IMAGES:,} hidden test images: about"
        f" {HIDDEN_TEST_IMAGES / rate / 60:.1f} min"
    )
