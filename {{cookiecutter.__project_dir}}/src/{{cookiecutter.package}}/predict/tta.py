"""The test-time augmentation (TTA) views: one list for predict, cv, package and the notebook.
Each name maps to the flips of an NCHW batch whose probabilities are averaged (the batch itself
first). This module imports nothing heavy, so the bundle's manifest and the CLI can read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from ..utils.errors import DataError

if TYPE_CHECKING:
    import torch

TTA = Literal["none", "hflip", "flips"]  # the type of a --tta option
TTA_NAMES: tuple[str, ...] = get_args(TTA)
# Per name: the NCHW dims each averaged view flips (() the batch itself, 3 horizontal).
TTA_VIEWS = dict(zip(TTA_NAMES, [((),), ((), (3,)), ((), (3,), (2,), (2, 3))], strict=True))


def check_tta(tta: str) -> str:
    """``tta`` if it names a view list; ``DataError`` listing the names otherwise."""
    if tta not in TTA_VIEWS:
        raise DataError(f"--tta {tta}: use one of {', '.join(TTA_NAMES)}")
    return tta


def tta_views(images: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The flipped copies of an NCHW batch that ``tta`` averages over (the batch itself first)."""
    return [images.flip(dims) if dims else images for dims in TTA_VIEWS[check_tta(tta)]]
