"""The augmentations: what a training image goes through, what an evaluated one does, and the
normalisation applied to whole batches on the training device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW images -> float32, scaled to [0, 1] and normalised with ImageNet statistics."""
    return v2.functional.normalize(images.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD)
