"""Strip a training checkpoint to what ``inference.load_classifier`` reads (no optimizer, loop or
callback state), for a small Kaggle weights dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ..utils.errors import DataError
from ..predict.inference import Checkpoint, load_classifier
from ..utils.torchfiles import save_torch_file

KEPT = (
    "state_dict",
    "hyper_parameters",
    "datamodule_hyper_parameters",
    "pytorch-lightning_version",
)


def stripped(checkpoint: Any, source: str | Path) -> dict[str, Any]:
    """The inference part of a loaded checkpoint; ``DataError`` if it has no weights."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise DataError(f"{source}: not a Lightning checkpoint (no state_dict)")
    return {key: checkpoint[key] for key in KEPT if key in checkpoint}


def strip_checkpoint(source: Checkpoint, target: str | Path) -> tuple[int, int]:
    """Write the stripped copy of ``source`` to ``target``; the sizes before and after, in bytes."""
    save_torch_file(stripped(source.content, source.path), target)
    load_classifier(target)
    return source.path.stat().st_size, Path(target).stat().st_size
