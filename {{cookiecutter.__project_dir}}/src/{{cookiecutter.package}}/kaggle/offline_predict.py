"""``predict`` from Python, the offline notebook's API: the same rows, and no ``jsonargparse`` or
``iterstrat`` import (they are not on Kaggle)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .manifest import read_manifest
from ..prep.folder_checks import list_images
from ..utils.hardware import default_num_workers
from ..predict.inference import EnsembleClassifier, predict_images, speed_line
from ..metrics import decode, labels_to_text
from ..utils.quiet import drop_adverts
from ..predict.submission import one_row_per_image, write_probabilities, write_submission

drop_adverts()


def predict_folder(
    checkpoints: Sequence[str | Path],
    images: str | Path,
    out: str | Path,
    image_size: int,
    tta: str = "none",
    threshold: float | Sequence[float] | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    accelerator: str = "auto",
    precision: str | None = None,
    probabilities: str | Path | None = None,
) -> Path:
    """Write the submission of ``images`` (mean of ``checkpoints`` over the ``tta`` views, decoded
    at ``threshold``, default the first checkpoint's) to ``out``, and the probabilities there."""
    names = list_images(Path(images))
    ensemble = EnsembleClassifier.from_checkpoints(checkpoints, tta=tta, threshold=threshold)
    workers = default_num_workers(num_workers)
    ids, probs = predict_images(
        ensemble, Path(images), names, image_size, batch_size, workers, accelerator, precision
    )
    ids, probs = one_row_per_image(ids, probs, names)
    labels = labels_to_text(decode(probs, ensemble.hparams["threshold"]), ensemble.classes)
    if probabilities is not None:
        write_probabilities(probabilities, ids, probs, ensemble.classes)
    written = write_submission(out, ids, labels)
    print(speed_line(ensemble))
    return written


def predict_with_manifest(
    manifest: str | Path, images: str | Path, out: str | Path, **options: Any
) -> Path:
    """``predict_folder`` with the settings of a bundle's ``manifest.json``; ``options``: its
    ``num_workers``, ``accelerator``, ``precision``, ``probabilities``."""
    m = read_manifest(manifest)
    return predict_folder(
        m.checkpoints, images, out, m.image_size, m.tta, m.threshold, m.batch_size, **options
    )
