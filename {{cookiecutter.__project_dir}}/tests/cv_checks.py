"""Checks of a ``cv`` run computed in the tests, independently of the code paths cv uses.

The predictions are recomputed image by image from a checkpoint (``load_classifier`` and a plain
forward pass in float32), so a mix-up of checkpoints, images or views in cv or predict shows.
"""

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from {{ cookiecutter.package }}.data import ImageDataset, build_transforms
from {{ cookiecutter.package }}.utils.hardware import default_precision
from {{ cookiecutter.package }}.predict.inference import load_classifier

from helpers import PRECISION

# A flipped view of an NCHW batch is ``images.flip(dims)``: none, horizontal, vertical, both.
FLIPS = ((), (3,), (2,), (2, 3))
# Most a class's count in one fold may differ from its mean count per fold.
STRATIFIED_SLACK = 1.5


def add_copies(data_dir: Path, copies: Mapping[str, tuple[str, str | None]]) -> None:
    """Byte-identical copies of training images under new names, each with a ``train.csv`` row.

    ``copies``: new name -> (image it copies, its labels; ``None``: the labels of that image).
    """
    folder = data_dir / "train_images"
    rows = (data_dir / "train.csv").read_text().splitlines()
    labels = dict(row.split(",", 1) for row in rows[1:])
    for name, (source, label) in copies.items():
        shutil.copy(folder / source, folder / name)
        rows.append(f"{name},{label or labels[source]}")
    (data_dir / "train.csv").write_text("\n".join(rows) + "\n")


# A copy of train_0002 cropped by 2 % on each side, shrunk to 75 % and saved as JPEG quality 70
# (6 bits of 64 from its original); a re-encoded copy of train_0003 with other labels.
NEAR, CONFLICT = "near_0002.jpg", "relabelled_0003.jpg"


def near_copy(source: Path, target: Path, crop: float = 0.02, quality: int = 70) -> None:
    """Write a cropped, shrunk, re-encoded copy of the image ``source``."""
    with Image.open(source) as image:
        width, height = image.size
        dx, dy = round(crop * width), round(crop * height)
        cropped = image.convert("RGB").crop((dx, dy, width - dx, height - dy))
        shrunk = cropped.resize((width * 3 // 4, height * 3 // 4), Image.Resampling.BICUBIC)
        shrunk.save(target, format="JPEG", quality=quality)


def add_near_copies(data_dir: Path) -> None:
    """``NEAR`` (train_0002's labels) and ``CONFLICT`` (labels other than train_0003's)."""
    folder = data_dir / "train_images"
    near_copy(folder / "train_0002.jpg", folder / NEAR)
    near_copy(folder / "train_0003.jpg", folder / CONFLICT, crop=0.0, quality=60)
    rows = (data_dir / "train.csv").read_text().splitlines()
    labels = dict(row.split(",", 1) for row in rows[1:])
    assert labels["train_0003.jpg"] != "healthy"
    rows += [f"{NEAR},{labels['train_0002.jpg']}", f"{CONFLICT},healthy"]
    (data_dir / "train.csv").write_text("\n".join(rows) + "\n")


def assert_stratified(folds: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> None:
    """Each class's count in every fold is within ``STRATIFIED_SLACK`` of its mean per fold."""
    n_folds = int(folds.max()) + 1
    for column, name in enumerate(classes):
        counts = np.bincount(folds[targets[:, column] == 1], minlength=n_folds)
        mean = targets[:, column].sum() / n_folds
        assert (abs(counts - mean) <= STRATIFIED_SLACK).all(), f"{name}: {counts.tolist()}"


def probability_tolerance() -> float:
    """How far a run's probabilities may be from float32 ones at the precision the tests train."""
    precision = PRECISION[1] if PRECISION else default_precision("cpu")
    return 1e-4 if precision.startswith(("32", "64")) else 0.05


def recomputed_probabilities(
    checkpoint: Path,
    folder: Path,
    names: Sequence[str],
    image_size: int,
    views: Sequence[tuple[int, ...]] = ((),),
) -> np.ndarray:
    """Sigmoid probabilities of ``checkpoint`` for ``names``, averaged over flipped ``views``."""
    model, _ = load_classifier(checkpoint)
    transform = build_transforms(image_size, train=False)
    dataset = ImageDataset(folder, names, transform, decode_size=image_size)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])  # uint8: the model
    with torch.no_grad():
        probs = [torch.sigmoid(model(images.flip(dims) if dims else images)) for dims in views]
    return torch.stack(probs).mean(0).numpy()


def copy_cv_run(cv_run: Path, target: Path) -> Path:
    """A private copy of the cv fixture, checkpoints hard-linked (cv replaces, never edits them)."""

    def link_checkpoints(source: str, copy: str) -> None:
        try:
            if source.endswith(".ckpt"):
                os.link(source, copy)
                return
        except OSError:
            pass
        shutil.copy2(source, copy)

    return Path(shutil.copytree(cv_run, target, copy_function=link_checkpoints))
