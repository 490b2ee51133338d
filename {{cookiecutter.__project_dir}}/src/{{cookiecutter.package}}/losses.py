"""The multi-label losses on raw logits, one binary problem per label: ``bce``, ``focal`` and
``asl`` (Asymmetric Loss, Ridnik et al. 2021), and label smoothing of the training targets.

Every loss is linear in the target ``t`` (``t`` times the positive term plus ``1 - t`` times the
negative one), so soft targets in [0, 1] (mixup, cutmix, smoothing, a teacher's probabilities)
are the same mix of the losses of hard ones. Computed in float32 from log-sigmoids: finite values
and gradients at any logit, whatever the training precision."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from .utils.errors import DataError

LossName = Literal["bce", "focal", "asl"]
TINY = torch.finfo(torch.float32).tiny  # keeps log() and pow() of a zero probability finite


def smooth_targets(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """``t * (1 - eps) + eps / 2``: each label is its own two-class problem, so its target moves
    ``eps`` toward that problem's uniform 0.5 (not toward ``1 / n_labels``, the softmax form)."""
    return targets * (1 - eps) + eps / 2 if eps else targets


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``-(w t (1-p)^gamma_pos log p + (1-t) q^gamma_neg log(1-q))``, ``p`` the sigmoid,
    ``q = max(p - clip, 0)`` (easy negatives below ``clip`` cost nothing), ``w`` the positive
    weight. Focal loss is ``gamma_pos = gamma_neg``, ``clip = 0``; with every term 0 it is BCE."""
    x, t = logits.float(), targets.float()
    log_p, log_not_p = F.logsigmoid(x), F.logsigmoid(-x)
    if clip > 0:
        q = (torch.sigmoid(x) - clip).clamp(min=TINY)
        log_q, log_not_q = q.log(), torch.log1p(-q)  # 1 - q >= clip: finite
    else:
        log_q, log_not_q = log_p, log_not_p
    positive = torch.exp(gamma_pos * log_not_p) * log_p
    negative = torch.exp(gamma_neg * log_q) * log_not_q
    if pos_weight is not None:
        positive = positive * pos_weight
    return -(t * positive + (1 - t) * negative).mean()


class MultiLabelLoss(nn.Module):
    """The loss ``name`` with its parameters; ``pos_weight`` (one per class) scales the positive
    term of any of them. The parameters of the other losses are ignored."""

    pos_weight: torch.Tensor | None

    def __init__(
        self,
        name: str = "bce",
        pos_weight: list[float] | None = None,
        focal_gamma: float = 2.0,
        asl_gamma_pos: float = 0.0,
        asl_gamma_neg: float = 4.0,
        asl_clip: float = 0.05,
    ) -> None:
        super().__init__()
        if name not in get_args(LossName):
            raise DataError(f"loss={name!r} is not one of {', '.join(get_args(LossName))}")
        self.name = name
        # The key BCEWithLogitsLoss used: checkpoints keep loading.
        self.register_buffer("pos_weight", None if pos_weight is None else torch.tensor(pos_weight))
        self.focusing = {
            "bce": None,
            "focal": (focal_gamma, focal_gamma, 0.0),
            "asl": (asl_gamma_pos, asl_gamma_neg, asl_clip),
        }[name]

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss over every image and label (a float32 scalar)."""
        pos_weight = None if self.pos_weight is None else self.pos_weight.float()
        if self.focusing is None:
            return F.binary_cross_entropy_with_logits(
                logits.float(), targets.float(), pos_weight=pos_weight
            )
        return asymmetric_loss(logits, targets, *self.focusing, pos_weight=pos_weight)
