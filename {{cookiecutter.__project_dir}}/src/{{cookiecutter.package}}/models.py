"""The LightningModule: backbone features -> dropout -> linear head -> logits, one per label,
trained with a multi-label loss of ``losses.py`` on the raw logits (no sigmoid or softmax before
it), on batches mixed by ``transforms.mix_batch``, with AdamW and a per-step warmup and cosine
schedule; validation logs the competition metric and each class's F1. The label vocabulary is a
hyper-parameter, so a checkpoint alone is enough to predict and decode."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters
import torch
from torch import nn

from .backbones import check_image_size, create_backbone, input_stats
from .losses import LossName, MultiLabelLoss, smooth_targets
from .transforms import mix_batch, normalize_batch
from .utils.constraints import ClosedUnitInterval, HalfOpenUnitInterval, NonNegativeFinite
from .utils.constraints import PositiveFinite, check_declared_ranges
from .utils.errors import DataError
from . import metrics
from .metrics import decode, per_class_f1


class PlantClassifier(pl.LightningModule):
    """Multi-label image classifier.

    Args:
        backbone: ``timm/<architecture>[.<tag>]`` (``timm/convnext_tiny.fb_in22k``), a torchvision
            model name (``resnet18``) or an ``nn.Module`` (its last ``nn.Linear`` is replaced); a
            checkpoint holds a module named by class path in a config, not an instance.
        classes: label vocabulary; ``None`` takes it from the datamodule's ``train.csv`` at fit.
        pretrained: ``False``, ``True`` (the published weights: cache, else download), a local
            weights file, or for timm ``local-dir:<folder>`` (see ``backbones``); a checkpoint
            rebuilds its model without them.
        threshold: probability above which a label is predicted in validation metrics.
        lr: AdamW learning rate of the head. backbone_lr_scale: the backbone's rate is
            ``lr * backbone_lr_scale`` (below 1: pretrained features move less than the new head).
        weight_decay: AdamW (decoupled) weight decay of weight matrices and kernels; biases and
            normalisation scales get none (decaying them only shrinks what normalisation sets).
        scheduler: ``"cosine"`` anneals the learning rate to 0 at the last optimizer step, updated
            every step; ``"none"`` keeps it.
        warmup_epochs: linear warmup from ``lr / steps`` to ``lr`` over this many epochs (counted
            in optimizer steps, fractions allowed) before the cosine; 0: none.
        dropout: dropout before the head.
        pos_weight: per-class weights of the positive term of the loss (rare classes up).
        loss: ``"bce"`` (binary cross-entropy), ``"focal"`` (``focal_gamma``) or ``"asl"``
            (Asymmetric Loss: ``asl_gamma_pos``, ``asl_gamma_neg``, ``asl_clip``); ``losses.py``.
        label_smoothing: training targets ``t -> t * (1 - eps) + eps / 2``; 0: none.
        mixup_p, mixup_alpha: share of training batches mixed by mixup, lam ~ Beta(alpha, alpha).
        cutmix_p, cutmix_alpha: the same for cutmix (a box of a shuffled image pasted in); a batch
            gets one or the other (``mixup_p + cutmix_p <= 1``), targets mixed like the pixels.
            Validation, test and predict batches are never mixed nor smoothed.
        channels_last: NHWC memory layout, faster convolutions on recent CPUs and GPUs."""

    # Arguments checked and made plain first: a checkpoint must load with weights_only=True.
    @check_declared_ranges
    def __init__(
        self,
        backbone: str | nn.Module = "resnet18",
        classes: list[str] | None = None,
        pretrained: bool | str = False,
        threshold: ClosedUnitInterval = 0.5,
        lr: PositiveFinite = 1e-3,
        backbone_lr_scale: PositiveFinite = 1.0,
        weight_decay: NonNegativeFinite = 1e-4,
        scheduler: Literal["cosine", "none"] = "cosine",
        warmup_epochs: NonNegativeFinite = 0.0,
        dropout: HalfOpenUnitInterval = 0.0,
        pos_weight: list[PositiveFinite] | None = None,
        loss: LossName = "bce",
        focal_gamma: NonNegativeFinite = 2.0,
        asl_gamma_pos: NonNegativeFinite = 0.0,
        asl_gamma_neg: NonNegativeFinite = 4.0,
        asl_clip: HalfOpenUnitInterval = 0.05,
        label_smoothing: HalfOpenUnitInterval = 0.0,
        mixup_p: ClosedUnitInterval = 0.0,
        mixup_alpha: PositiveFinite = 0.4,
        cutmix_p: ClosedUnitInterval = 0.0,
        cutmix_alpha: PositiveFinite = 1.0,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if mixup_p + cutmix_p > 1:
            raise DataError(
                f"mixup_p={mixup_p} + cutmix_p={cutmix_p} is above 1 (one or the other)"
            )
        # Lightning 2.3-2.6 has no public way to ask whether LightningCLI built this model from a
        # config (then the hyper-parameters are that config: the backbone is its class path).
        instance = isinstance(backbone, nn.Module) and _given_hyperparameters.get() is None
        self.save_hyperparameters(ignore=["backbone"] if instance else None)
        self.backbone, self.num_features = create_backbone(backbone, pretrained)
        self.input_mean, self.input_std = input_stats(self.backbone)
        self.dropout = nn.Dropout(dropout)
        self.head: nn.Linear | None = None
        self.criterion: MultiLabelLoss | None = None
        self.classes: list[str] | None = None
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if classes is not None:
            self._build_head(list(classes))

    def _build_head(self, classes: list[str]) -> None:
        if not classes:
            raise DataError("the label vocabulary is empty")
        pos_weight = self.hparams.get("pos_weight")
        if pos_weight is not None and len(pos_weight) != len(classes):
            raise DataError(
                f"pos_weight has {len(pos_weight)} values for {len(classes)} classes {classes}"
            )
        self.classes = classes
        self.hparams["classes"] = classes
        self.head = nn.Linear(self.num_features, len(classes))
        hp = self.hparams
        self.criterion = MultiLabelLoss(
            hp["loss"],
            pos_weight,
            hp["focal_gamma"],
            hp["asl_gamma_pos"],
            hp["asl_gamma_neg"],
            hp["asl_clip"],
        )

    def check_vocabulary(self, datamodule: Any) -> None:
        """Raise ``DataError`` if the datamodule's ``train.csv`` has other labels than the model."""
        data_classes = getattr(datamodule, "available_classes", None)
        if self.classes is not None and data_classes is not None and data_classes != self.classes:
            raise DataError(
                f"label vocabulary mismatch: the model was trained on {self.classes}, but"
                f" {datamodule.train_csv} has {list(data_classes)}; predict with a checkpoint"
                " trained on this label set"
            )

    def check_data(self, datamodule: Any) -> None:
        """``check_vocabulary``, and a ``BackboneError`` if the backbone takes one image size and
        the datamodule's is another."""
        self.check_vocabulary(datamodule)
        size = getattr(datamodule, "image_size", None)
        check_image_size(self.backbone, self.hparams.get("backbone"), size)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None)
        if self.classes is None:
            data_classes = getattr(datamodule, "available_classes", None)
            if data_classes is None:
                raise DataError("no label vocabulary: pass classes or a datamodule with train.csv")
            self._build_head(list(data_classes))
        self.check_data(datamodule)
        if self.hparams.get("channels_last"):
            self.to(memory_format=torch.channels_last)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (what the loaders give) normalised with the backbone's statistics
        (``input_stats``); float images are taken as normalised already."""
        if images.dtype != torch.uint8:
            return images
        return normalize_batch(images, self.input_mean, self.input_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (batch x classes) of uint8 images, or of float images normalised already;
        apply a sigmoid for probabilities."""
        if self.head is None:
            raise RuntimeError("the head is built once classes are known (pass classes=...)")
        images = self.normalize(images)
        if self.hparams.get("channels_last"):
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.dropout(self.backbone(images)))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load weights; a checkpoint of another architecture or head size is a ``DataError``."""
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())
            raise DataError(
                f"the checkpoint's weights do not fit this model (backbone"
                f" {self.hparams.get('backbone', type(self.backbone).__name__)!r},"
                f" {len(self.classes or [])} classes): {detail[:300]}"
            ) from None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Multi-label loss on raw logits."""
        if self.criterion is None:
            raise RuntimeError("the loss is built with the head, once classes are known")
        return self.criterion(logits, targets.to(logits.dtype))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        mix = mix_batch(
            self.normalize(batch["image"]),
            batch["target"].float(),
            hp["mixup_p"],
            hp["mixup_alpha"],
            hp["cutmix_p"],
            hp["cutmix_alpha"],
        )
        targets = smooth_targets(mix.targets, hp["label_smoothing"])
        loss = self.loss(self(mix.images), targets)
        self.log("train/loss", loss, prog_bar=True, on_epoch=True, batch_size=len(targets))
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self(batch["image"])
        loss = self.loss(logits, batch["target"])
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(logits), sync_dist=True)
        probs = torch.sigmoid(logits.float()).detach()
        self._outputs.append((probs, batch["target"].detach(), batch["index"].detach()))

    def _gathered_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and targets of every evaluated image, each image exactly once (under DDP
        the distributed sampler pads the processes' shares with repeats: one row per index)."""
        probs, targets, indices = (torch.cat(column) for column in zip(*self._outputs))
        self._outputs.clear()
        if self.trainer.world_size > 1:
            gathered = self.all_gather((probs, targets, indices))
            probs, targets, indices = (tensor.flatten(0, 1) for tensor in gathered)
        _, first = np.unique(indices.cpu().numpy(), return_index=True)
        return probs.cpu().numpy()[first], targets.cpu().numpy()[first].astype(np.int64)

    def _eval_epoch_end(self, stage: str) -> None:
        if not self._outputs:
            return
        probs, truth = self._gathered_outputs()
        predicted = decode(probs, self.hparams["threshold"])
        # Every process computed the same values from the gathered outputs: the sync is a no-op
        # that keeps Lightning from warning about epoch-level logs under DDP.
        score = metrics.score(truth, predicted)
        self.log(metrics.logged_key(stage), score, prog_bar=True, sync_dist=True)
        for name, value in zip(self.classes or [], per_class_f1(truth, predicted)):
            self.log(f"{stage}/f1_{name}", float(value), sync_dist=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return {"id": list(batch["id"]), "probs": torch.sigmoid(self(batch["image"]).float())}

    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW's parameter groups: backbone or not (its learning rate), and decayed or not
        (matrices and kernels are; biases and normalisation scales, one-dimensional, are not)."""
        hp = self.hparams
        groups: dict[str, dict[str, Any]] = {}
        for name, param in self.named_parameters():
            part = "backbone" if name.startswith("backbone.") else "head"
            decayed = param.ndim > 1
            key = part if decayed else f"{part}-no-decay"
            if key not in groups:
                scale = hp["backbone_lr_scale"] if part == "backbone" else 1.0
                decay = hp["weight_decay"] if decayed else 0.0
                groups[key] = {
                    "name": key,
                    "params": [],
                    "lr": hp["lr"] * scale,
                    "weight_decay": decay,
                }
            groups[key]["params"].append(param)
        return list(groups.values())

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.param_groups())
        hp = self.hparams
        if self._trainer is None or (hp["scheduler"] == "none" and not hp["warmup_epochs"]):
            return optimizer
        # Optimizer steps of the whole fit; infinite when neither max_epochs nor max_steps ends
        # it, and then the cosine has no end to reach: the rate stays after the warmup. Batches
        # per epoch are infinite when unknown (a loader without a length, max_steps=0): no warmup.
        total = self.trainer.estimated_stepping_batches
        bounded = math.isfinite(total)
        batches = self.trainer.num_training_batches
        accumulate = self.trainer.accumulate_grad_batches
        per_epoch = math.ceil(batches / accumulate) if math.isfinite(batches) else 0
        warmup = round(hp["warmup_epochs"] * per_epoch)
        last = int(total) if bounded else 0
        warmup = min(warmup, last) if bounded else warmup
        cosine = hp["scheduler"] == "cosine" and bounded
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup, last, cosine)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def lr_factor(step: int, warmup: int, total: int, cosine: bool) -> float:
    """The learning rate of optimizer step ``step`` (from 0) over the base rate: ``(step + 1) /
    warmup`` during the ``warmup`` steps, then ``(1 + cos(pi * (step - warmup) / (total -
    warmup))) / 2`` down to 0 at step ``total`` if ``cosine``, else 1."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return (1 + math.cos(math.pi * progress)) / 2
