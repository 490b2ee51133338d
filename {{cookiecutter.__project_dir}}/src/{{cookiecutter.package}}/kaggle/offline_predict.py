"""``predict`` from Python, the offline notebook's API: the same rows, and no ``jsonargparse`` or
``iterstrat`` import (they are not on Kaggle). Several GPUs (Kaggle's T4 x2) each predict a share
of the images in a process of their own, started by ``spawn``: unlike Lightning's launchers it
works in a Jupyter kernel whose CUDA is already initialised, with no process group or port."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import read_manifest
from ..prep.folder_checks import list_images
from ..utils.hardware import default_num_workers, inference_devices
from ..predict.inference import EnsembleClassifier, images_per_second, predict_images, speed_line
from ..metrics import decode, labels_to_text
from ..utils.quiet import quiet_lightning
from ..predict.submission import one_row_per_image, write_probabilities, write_submission

quiet_lightning()


def predict_share(
    checkpoints: Sequence[str | Path],
    tta: str,
    threshold: float | Sequence[float] | None,
    images: Path,
    names: Sequence[str],
    loader: tuple[int, int, int],
    accelerator: str,
    precision: str | None,
    device: int,
    weights: Sequence[float] | None = None,
) -> tuple[list[str], np.ndarray, float]:
    """One device's share: ids, probabilities and images per second of ``names`` on ``device``
    (``loader``: image size, batch size, workers); run in a process of its own."""
    ensemble = EnsembleClassifier.from_checkpoints(checkpoints, tta, threshold, weights)
    on = [device] if accelerator in ("gpu", "cuda") else 1
    ids, probs = predict_images(ensemble, images, names, *loader, accelerator, precision, on)
    return ids, probs, images_per_second(ensemble.marks)


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
    devices: int | None = None,
    weights: Sequence[float] | None = None,
) -> Path:
    """Write the submission of ``images`` (mean of ``checkpoints`` over the ``tta`` views,
    weighted by ``weights``, default equal; decoded at ``threshold``, default the first
    checkpoint's) to ``out``, and the probabilities to ``probabilities``.
    ``devices`` ``None``: ``hardware.inference_devices(accelerator)`` decides (every usable GPU,
    else the CPU); ``num_workers`` is shared among the devices."""
    names = list_images(Path(images))
    ensemble = EnsembleClassifier.from_checkpoints(checkpoints, tta, threshold, weights)
    if devices is None:
        accelerator, devices = inference_devices(accelerator)
    count = max(1, min(devices, len(names)))
    loader = image_size, batch_size, default_num_workers(num_workers) // count
    if count == 1:
        ids, probs = predict_images(ensemble, Path(images), names, *loader, accelerator, precision)
        rate = images_per_second(ensemble.marks)
    else:
        shares = [
            names[len(names) * i // count : len(names) * (i + 1) // count] for i in range(count)
        ]
        settings = list(checkpoints), tta, threshold, Path(images)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(count, mp_context=spawn) as pool:
            jobs = [
                pool.submit(
                    predict_share, *settings, share, loader, accelerator, precision, device, weights
                )
                for device, share in enumerate(shares)
            ]
            results = [job.result() for job in jobs]
        ids = [name for share_ids, _, _ in results for name in share_ids]
        probs = np.concatenate([share_probs for _, share_probs, _ in results])
        rate = sum(share_rate for _, _, share_rate in results)
        ensemble.images = len(ids)
    ids, probs = one_row_per_image(ids, probs, names)
    labels = labels_to_text(decode(probs, ensemble.hparams["threshold"]), ensemble.classes)
    if probabilities is not None:
        write_probabilities(probabilities, ids, probs, ensemble.classes)
    written = write_submission(out, ids, labels)
    print(speed_line(ensemble, rate))
    return written


def predict_with_manifest(
    manifest: str | Path, images: str | Path, out: str | Path, **options: Any
) -> Path:
    """``predict_folder`` with the settings of a bundle's ``manifest.json``; ``options``: its
    ``num_workers``, ``accelerator``, ``precision``, ``probabilities``, ``devices``."""
    m = read_manifest(manifest)
    settings = m.image_size, m.tta, m.threshold, m.batch_size
    return predict_folder(m.checkpoints, images, out, *settings, **options, weights=m.weights)
