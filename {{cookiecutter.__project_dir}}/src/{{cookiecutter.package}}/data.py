"""Data for the Kaggle layout: ``train.csv`` + ``train_images/`` + ``test_images/``.

``train.csv`` has the columns ``image,labels``; ``labels`` is a space-separated list of names.
The label vocabulary is read from the CSV (sorted), never hard-coded, so the same code serves
Plant Pathology 2020, 2021 or any other multi-label image set. Validation is a seeded multi-label
iteratively-stratified fold, so rare label combinations show up in validation too.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .cache import cached_names, check_cache
from .constraints import ImageSide, NonNegativeInt, PositiveInt, Seed, ValFraction, check_range
from .errors import DataError
from .hardware import default_num_workers
from .images import IMAGE_SUFFIXES, check_image_header, find_unreadable, load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_CSV = "train.csv"
TRAIN_IMAGES = "train_images"
TEST_IMAGES = "test_images"


@dataclass(frozen=True)
class Sample:
    """One row of ``train.csv``: the image file name and its label names."""

    image: str
    labels: tuple[str, ...]


def read_train_csv(path: str | Path) -> list[Sample]:
    """Parse and validate a Kaggle ``image,labels`` CSV; raise ``DataError`` naming the bad row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the competition's {TRAIN_CSV})")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        if not columns:
            raise DataError(f"{path}: file is empty (expected a header 'image,labels')")
        missing = [name for name in ("image", "labels") if name not in columns]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns)}"
                " (expected 'image,labels')"
            )
        reader.fieldnames = columns
        samples: list[Sample] = []
        seen: dict[str, int] = {}
        for row_number, row in enumerate(reader, start=2):
            image = (row.get("image") or "").strip()
            labels = tuple((row.get("labels") or "").split())
            if not image:
                raise DataError(f"{path}: row {row_number}: empty 'image' field")
            if not labels:
                raise DataError(f"{path}: row {row_number} ({image}): empty 'labels' field")
            separated = [label for label in labels if any(sep in label for sep in ",;|")]
            if separated:
                raise DataError(
                    f"{path}: row {row_number} ({image}): label {separated[0]!r} holds a"
                    " separator; the 'labels' field lists names separated by spaces"
                )
            if image in seen:
                raise DataError(
                    f"{path}: row {row_number}: image {image} is listed twice"
                    f" (first on row {seen[image]})"
                )
            seen[image] = row_number
            samples.append(Sample(image, labels))
    if not samples:
        raise DataError(f"{path}: no data rows under the header")
    _refuse_case_variants(path, samples)
    return samples


def _refuse_case_variants(path: Path, samples: Sequence[Sample]) -> None:
    """``DataError`` if two label names differ only by case (``Scab`` and ``scab``).

    They would silently become two classes; which spelling is right is the user's call.
    """
    first_row: dict[str, tuple[str, int]] = {}
    for row_number, sample in enumerate(samples, start=2):
        for label in sample.labels:
            spelling, row = first_row.setdefault(label.casefold(), (label, row_number))
            if spelling != label:
                raise DataError(
                    f"{path}: row {row_number} ({sample.image}): label {label!r} differs only by"
                    f" case from {spelling!r} (row {row}); use one spelling"
                )


def label_vocabulary(samples: Sequence[Sample]) -> list[str]:
    """All label names that occur in ``samples``, sorted so the order is stable."""
    return sorted({label for sample in samples for label in sample.labels})


def encode_labels(samples: Sequence[Sample], classes: Sequence[str]) -> np.ndarray:
    """Multi-hot matrix (n_samples x n_classes, float32) of ``samples`` over ``classes``."""
    index = {name: i for i, name in enumerate(classes)}
    targets = np.zeros((len(samples), len(classes)), dtype=np.float32)
    for row, sample in enumerate(samples):
        for label in sample.labels:
            if label not in index:
                raise DataError(
                    f"label {label!r} of image {sample.image} is not in {list(classes)}"
                )
            targets[row, index[label]] = 1.0
    return targets


def stratified_split(
    targets: np.ndarray, val_fraction: float = 0.2, fold: int = 0, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices: fold ``fold`` of a seeded multi-label stratified k-fold.

    The number of folds is ``round(1 / val_fraction)`` (0.2 -> 5 folds), so sweeping ``fold``
    over ``0..k-1`` gives a full cross-validation with disjoint validation sets.
    """
    if not 0.0 < val_fraction <= 0.5:
        raise DataError(f"val_fraction={val_fraction} must be in (0, 0.5]")
    n_folds = round(1.0 / val_fraction)
    if not 0 <= fold < n_folds:
        raise DataError(f"fold={fold} must be in 0..{n_folds - 1} for val_fraction={val_fraction}")
    if len(targets) < n_folds:
        raise DataError(f"{len(targets)} images are too few for {n_folds} folds")
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for index, (train_idx, val_idx) in enumerate(splitter.split(np.zeros(len(targets)), targets)):
        if index == fold:
            return np.sort(train_idx), np.sort(val_idx)
    raise AssertionError("unreachable: fold was range-checked")


def build_transforms(image_size: int, train: bool) -> Callable[[Any], torch.Tensor]:
    """Augmentations for training, a plain resize otherwise; both give ``image_size`` squares.

    The result is a uint8 CHW tensor: loader workers hand the main process a quarter of the bytes
    of float32, and ``normalize_batch`` scales whole batches on the training device instead.
    """
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
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class ImageDataset(Dataset):
    """Images from one folder, with multi-hot targets when given; items are dicts.

    Each item holds ``image`` (a uint8 CHW tensor), ``id`` (the file name), ``index`` (its
    position, which tells apart the repeats a distributed sampler pads with) and, for labelled
    data, ``target`` (multi-hot float tensor).
    """

    def __init__(
        self,
        folder: str | Path,
        names: Sequence[str],
        transform: Callable[[Any], torch.Tensor],
        targets: np.ndarray | None = None,
        decode_size: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.names = list(names)
        self.transform = transform
        self.targets = None if targets is None else torch.as_tensor(targets)
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        item: dict[str, Any] = {
            "image": self.transform(load_image(self.folder / name, self.decode_size)),
            "id": name,
            "index": index,
        }
        if self.targets is not None:
            item["target"] = self.targets[index]
        return item


def list_images(folder: Path) -> list[str]:
    """Sorted file names of the images in ``folder``, which must hold images and nothing else.

    Every file of a test folder must end up in the submission, so a file that would be left out
    (another suffix, a macOS ``._*`` resource file, a hidden file) is a ``DataError`` that names
    it, not a silently shorter submission. Sub-folders are ignored.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    names, left_out = [], []
    for entry in os.scandir(folder):
        if not entry.is_file():
            continue
        reason = _not_an_image(entry.name)
        if reason:
            left_out.append(f"{entry.name} ({reason})")
        else:
            names.append(entry.name)
    if left_out:
        left_out.sort()
        shown = "; ".join(left_out[:5]) + ("; ..." if len(left_out) > 5 else "")
        raise DataError(
            f"{folder}: {len(left_out)} file(s) would be left out of the predictions: {shown};"
            " move them out of the folder"
        )
    if not names:
        raise DataError(f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(names)


def _not_an_image(name: str) -> str | None:
    """Why the file ``name`` is not taken as an image, or ``None`` if it is one."""
    if name.startswith("._"):
        return "a macOS resource-fork file"
    if name.startswith("."):
        return "a hidden file"
    if not name.lower().endswith(IMAGE_SUFFIXES):
        return f"suffix {Path(name).suffix or '(none)'} is not one of {' '.join(IMAGE_SUFFIXES)}"
    return None


def check_listed_images(csv_path: Path, folder: Path, samples: Sequence[Sample]) -> None:
    """Every image listed in the CSV exists in ``folder`` and decodes, checked before any epoch.

    Images in a ``prepare`` cache were decoded and written by prepare, and ``check_cache``
    compares their sizes with its manifest: only their headers are read here. Other images are
    decoded in full, in parallel, and remembered between runs (``find_unreadable``).
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (listed images of {csv_path} live there)")
    present = {entry.name for entry in os.scandir(folder)}
    cached = cached_names(folder)
    for row_number, sample in enumerate(samples, start=2):
        if cached is not None and sample.image not in cached:
            raise DataError(
                f"{csv_path}: row {row_number}: image {sample.image} is not in the cache {folder}"
                " (prepare could not read it, or has not run since it was added: run it again)"
            )
        if sample.image not in present:
            raise DataError(
                f"{csv_path}: row {row_number}: image {sample.image} not found in {folder}"
            )
    if cached is not None:
        for sample in samples:
            check_image_header(folder / sample.image)
        return
    failures = find_unreadable(folder, [sample.image for sample in samples])
    for row_number, sample in enumerate(samples, start=2):
        if sample.image in failures:
            more = len(failures) - 1
            also = f" ({more} more listed images are unreadable)" if more else ""
            raise DataError(f"{csv_path}: row {row_number}: {failures[sample.image]}{also}")


class PlantDataModule(pl.LightningDataModule):
    """LightningDataModule for a Kaggle-layout folder of multi-label images.

    Args:
        data_dir: folder with ``train.csv``, ``train_images/`` and (for predict) ``test_images/``.
        image_size: side of the square images fed to the model, the same for train and val.
        batch_size: images per batch (the batch-size finder tunes this attribute).
        num_workers: loader processes; ``None`` picks one per spare core.
        val_fraction: share of images held out; ``round(1/val_fraction)`` folds.
        fold: which fold is the validation set.
        seed: seed of the stratified split.
        cache_dir: a cache made by ``prepare`` (pre-resized images); ``train.csv`` and the list of
            test images still come from ``data_dir``, so labels and order are unchanged.
    """

    def __init__(
        self,
        data_dir: str = "data",
        image_size: ImageSide = 224,
        batch_size: PositiveInt = 32,
        num_workers: NonNegativeInt | None = None,
        val_fraction: ValFraction = 0.2,
        fold: NonNegativeInt = 0,
        seed: Seed = 42,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        image_size = check_range("image_size", image_size, ImageSide)
        batch_size = check_range("batch_size", batch_size, PositiveInt)
        num_workers = check_range("num_workers", num_workers, NonNegativeInt)
        val_fraction = check_range("val_fraction", val_fraction, ValFraction)
        fold = check_range("fold", fold, NonNegativeInt)
        seed = check_range("seed", seed, Seed)
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.val_fraction = val_fraction
        self.fold = fold
        self.seed = seed
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._samples: list[Sample] | None = None
        self._checked: set[str] = set()
        self._split_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.train_set: ImageDataset | None = None
        self.val_set: ImageDataset | None = None
        self.predict_set: ImageDataset | None = None

    @property
    def train_csv(self) -> Path:
        return self.data_dir / TRAIN_CSV

    @property
    def train_images(self) -> Path:
        return self.data_dir / TRAIN_IMAGES

    @property
    def test_images(self) -> Path:
        return self.data_dir / TEST_IMAGES

    def images_dir(self, folder: str) -> Path:
        """Where the images of ``folder`` are read from: the cache when there is one."""
        return (self.cache_dir or self.data_dir) / folder

    def _check_cache(self) -> None:
        if self.cache_dir is not None:
            check_cache(self.cache_dir, self.data_dir, self.image_size)

    def _check_data_dir(self) -> None:
        if not self.data_dir.is_dir():
            raise DataError(
                f"{self.data_dir}: data folder not found (expected {TRAIN_CSV}, {TRAIN_IMAGES}/"
                f" and {TEST_IMAGES}/ in it)"
            )

    @property
    def samples(self) -> list[Sample]:
        """The validated rows of ``train.csv`` (read once)."""
        if self._samples is None:
            self._check_data_dir()
            self._samples = read_train_csv(self.train_csv)
        return self._samples

    @property
    def classes(self) -> list[str]:
        """Label vocabulary of ``train.csv``, sorted."""
        return label_vocabulary(self.samples)

    @property
    def available_classes(self) -> list[str] | None:
        """Label vocabulary when ``train.csv`` exists (it may not beside a test set), else None."""
        return self.classes if self.train_csv.is_file() else None

    def check(self, stage: str) -> None:
        """Validate everything ``stage`` will read, before any output is written."""
        if stage in self._checked:
            return
        self._check_data_dir()
        self._check_cache()
        if stage == "predict":
            names = list_images(self.test_images)
            if self.cache_dir is not None:
                cached_dir = self.images_dir(TEST_IMAGES)
                cached = set(os.listdir(cached_dir)) if cached_dir.is_dir() else set()
                missing = sorted(set(names) - cached)
                if missing:
                    raise DataError(
                        f"{self.images_dir(TEST_IMAGES)}: {len(missing)} test images are not"
                        f" cached (first: {missing[0]}); run prepare again"
                    )
        else:
            check_listed_images(self.train_csv, self.images_dir(TRAIN_IMAGES), self.samples)
            self._split()
        self._checked.add(stage)

    def _split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Multi-hot targets and the (cached) train / validation indices."""
        if self._split_cache is None:
            targets = encode_labels(self.samples, self.classes)
            train_idx, val_idx = stratified_split(targets, self.val_fraction, self.fold, self.seed)
            self._split_cache = (targets, train_idx, val_idx)
        return self._split_cache

    def setup(self, stage: str) -> None:
        self.check(stage)
        if stage == "predict":
            self.predict_set = ImageDataset(
                self.images_dir(TEST_IMAGES),
                list_images(self.test_images),
                build_transforms(self.image_size, train=False),
                decode_size=self.image_size,
            )
            return
        targets, train_idx, val_idx = self._split()
        self.train_set = self._labelled_set(train_idx, targets, train=True)
        self.val_set = self._labelled_set(val_idx, targets, train=False)

    def _labelled_set(self, indices: np.ndarray, targets: np.ndarray, train: bool) -> ImageDataset:
        """The ``train.csv`` rows at ``indices``, with training or evaluation transforms."""
        return ImageDataset(
            self.images_dir(TRAIN_IMAGES),
            [self.samples[i].image for i in indices],
            build_transforms(self.image_size, train=train),
            targets[indices],
            decode_size=self.image_size,
        )

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Normalise images on the device they were moved to (cheap there, batched)."""
        if batch["image"].dtype == torch.uint8:
            batch["image"] = normalize_batch(batch["image"])
        return batch

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)
