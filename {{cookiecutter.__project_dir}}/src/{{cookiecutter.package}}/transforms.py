"""The augmentations: what a training image goes through, what an evaluated one does, the
normalisation the model applies to whole uint8 batches on its device, and the mixing of training
batches (mixup, cutmix) with their label vectors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transforms(image_size: int, train: bool) -> Callable[[Any], torch.Tensor]:
    """Augmentations for training, a plain resize otherwise, to uint8 CHW ``image_size`` squares
    (a quarter of float32's bytes between processes; ``normalize_batch`` scales on the device)."""
    if train:
        geometry = [
            v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
        ]
    else:
        geometry = [v2.Resize((image_size, image_size), antialias=True)]
    return v2.Compose([*geometry, v2.PILToTensor()])


def normalize_batch(
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 NCHW images -> float32, scaled to [0, 1] and normalised with a backbone's statistics
    (default ImageNet's; ``backbones.input_stats`` gives each backbone's)."""
    return v2.functional.normalize(images.float() / 255.0, list(mean), list(std))


class Mix(NamedTuple):
    """A mixed training batch and how it was mixed: image ``i`` took ``1 - lam`` of image
    ``perm[i]`` (mixup: of every pixel; cutmix: the pixels in ``box`` = (top, bottom, left,
    right), ``lam`` then the area left). ``lam`` 1.0 and ``perm`` ``None``: not mixed."""

    images: torch.Tensor
    targets: torch.Tensor
    lam: float
    perm: torch.Tensor | None
    box: tuple[int, int, int, int] | None


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    mixup_p: float = 0.0,
    mixup_alpha: float = 0.4,
    cutmix_p: float = 0.0,
    cutmix_alpha: float = 1.0,
) -> Mix:
    """Mixup (Zhang et al. 2018) with probability ``mixup_p``, else cutmix (Yun et al. 2019) with
    ``cutmix_p``, of a whole training batch with a shuffled copy of itself, ``lam`` drawn from
    Beta(alpha, alpha). The label vectors get the same convex combination as the pixels, so a
    multi-label target stays a per-label probability. Mixing commutes with the per-channel
    normalisation, so it runs on the normalised batch, on its device."""
    draw = torch.rand(()).item()
    if draw >= mixup_p + cutmix_p or len(images) < 2:
        return Mix(images, targets, 1.0, None, None)
    perm = torch.randperm(len(images), device=images.device)
    if draw < mixup_p:
        lam = float(torch.distributions.Beta(mixup_alpha, mixup_alpha).sample())
        mixed = images * lam + images[perm] * (1 - lam)
        box = None
    else:
        cut = float(torch.distributions.Beta(cutmix_alpha, cutmix_alpha).sample())
        height, width = images.shape[-2:]
        cut_h, cut_w = round(height * (1 - cut) ** 0.5), round(width * (1 - cut) ** 0.5)
        y, x = int(torch.randint(height, ())), int(torch.randint(width, ()))
        top, bottom = max(y - cut_h // 2, 0), min(y + cut_h - cut_h // 2, height)
        left, right = max(x - cut_w // 2, 0), min(x + cut_w - cut_w // 2, width)
        box = (top, bottom, left, right)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = images[perm][..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (height * width)  # the box clipped at edges
    return Mix(mixed, targets * lam + targets[perm] * (1 - lam), lam, perm, box)
