"""Images for the model: the dataset, and the DataModule over a Kaggle-layout folder, which checks
every image a stage will read, then serves uint8 batches (the model normalises them on its device
with its backbone's statistics)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .predict.submission import read_probabilities
from .prep.cache import check_cache
from .utils.constraints import DuplicateDistance, ImageSide, NonNegativeInt, PositiveInt, Seed
from .utils.constraints import ValFraction
from .utils.constraints import check_declared_ranges
from .utils.errors import DataError
from .utils.hardware import default_num_workers
from .prep.folder_checks import check_cached, check_listed_images, list_images
from .prep.duplicates import DUPLICATE_DISTANCE, near_duplicate_groups
from .folds import split_from_file, validation_split
from .images import load_image
from .labels import Sample, encode_labels, label_vocabulary, read_train_csv
from .layout import TEST_IMAGES, TRAIN_CSV, TRAIN_IMAGES
from .transforms import build_transforms


class ImageDataset(Dataset):
    """Images from one folder; each item is a dict of ``image`` (uint8 CHW), ``id`` (the file
    name), ``index`` (tells apart the repeats a distributed sampler pads with) and, with
    ``targets``, ``target`` (multi-hot)."""

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


class PlantDataModule(pl.LightningDataModule):
    """LightningDataModule for a Kaggle-layout folder of multi-label images.

    Args:
        data_dir: folder with ``train.csv``, ``train_images/`` and (for predict) ``test_images/``.
        image_size: side of the square images fed to the model, the same for train and val.
        batch_size: images per batch (the batch-size finder tunes this attribute).
        num_workers: loader processes; ``None`` (auto) picks one per spare core.
        val_fraction: share of images held out: one of ``round(1/val_fraction)`` folds, the
            folds ``cv`` assigns (duplicate images share a fold; see ``folds``).
        fold: which fold is the validation set.
        seed: seed of the folds.
        cache_dir: a cache made by ``prepare`` (pre-resized images); ``train.csv`` and the list of
            test images still come from ``data_dir``, so labels and order are unchanged.
        split_file: an ``image,fold`` CSV (``cv`` writes one) that assigns the folds instead of
            ``val_fraction`` and ``seed``; ``fold`` is then the validation fold.
        duplicate_distance: images whose perceptual hashes (64 bits) differ in at most this
            many bits are duplicates, kept in one fold with identical files (0 to 16; 0: same
            hash only; see ``prep.duplicates``).
        soft_targets: an ``image,<class>...`` CSV of training targets in [0, 1] (``distill``
            writes one) that replace the training images' multi-hot labels; validation keeps
            the labels of ``train.csv``. Every loss option (bce, focal, asl) takes them."""

    @check_declared_ranges
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
        split_file: str | None = None,
        duplicate_distance: DuplicateDistance = DUPLICATE_DISTANCE,
        soft_targets: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = default_num_workers(num_workers)
        self.val_fraction = val_fraction
        self.fold = fold
        self.seed = seed
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.split_file = None if split_file is None else Path(split_file)
        self.duplicate_distance = duplicate_distance
        self.soft_targets = None if soft_targets is None else Path(soft_targets)
        self._checked: set[str] = set()
        self.train_set: ImageDataset | None = None
        self.val_set: ImageDataset | None = None
        self.predict_set: ImageDataset | None = None

    @property
    def train_csv(self) -> Path:
        return self.data_dir / TRAIN_CSV

    def images_dir(self, folder: str) -> Path:
        """Where the images of ``folder`` are read from: the cache when there is one."""
        return (self.cache_dir or self.data_dir) / folder

    def _check_data_dir(self) -> None:
        if not self.data_dir.is_dir():
            raise DataError(
                f"{self.data_dir}: data folder not found (expected {TRAIN_CSV}, {TRAIN_IMAGES}/"
                f" and {TEST_IMAGES}/ in it)"
            )

    @functools.cached_property
    def samples(self) -> list[Sample]:
        """The validated rows of ``train.csv`` (read once)."""
        self._check_data_dir()
        return read_train_csv(self.train_csv)

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
        if self.cache_dir is not None:
            check_cache(self.cache_dir, self.data_dir, self.image_size)
        if stage == "predict":
            names = list_images(self.data_dir / TEST_IMAGES)
            if self.cache_dir is not None:
                check_cached(names, self.images_dir(TEST_IMAGES))
        else:
            check_listed_images(self.train_csv, self.images_dir(TRAIN_IMAGES), self.samples)
            self._split  # computed here: a bad split fails before any output
            self._soft_rows
        self._checked.add(stage)

    @functools.cached_property
    def _split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Multi-hot targets and the train / validation indices (computed once)."""
        targets = encode_labels(self.samples, self.classes)
        names = [sample.image for sample in self.samples]
        if self.split_file is not None:
            train_idx, val_idx = split_from_file(self.split_file, names, self.fold)
        else:
            folder, distance = self.data_dir / TRAIN_IMAGES, self.duplicate_distance
            groups = near_duplicate_groups(folder, names, distance, self.cache_dir)
            train_idx, val_idx = validation_split(
                names, targets, self.val_fraction, self.fold, self.seed, groups
            )
        return targets, train_idx, val_idx

    def setup(self, stage: str) -> None:
        self.check(stage)
        if stage == "predict":
            self.predict_set = ImageDataset(
                self.images_dir(TEST_IMAGES),
                list_images(self.data_dir / TEST_IMAGES),
                build_transforms(self.image_size, train=False),
                decode_size=self.image_size,
            )
            return
        targets, train_idx, val_idx = self._split
        soft = self._soft_rows
        self.train_set = self._labelled_set(
            train_idx, targets if soft is None else soft, train=True
        )
        self.val_set = self._labelled_set(val_idx, targets, train=False)

    @functools.cached_property
    def _soft_rows(self) -> np.ndarray | None:
        """The ``soft_targets`` file's rows in ``train.csv`` order (checked), if there is one."""
        if self.soft_targets is None:
            return None
        ids, soft = read_probabilities(self.soft_targets, self.classes)
        row_of = {name: row for row, name in enumerate(ids)}
        missing = [sample.image for sample in self.samples if sample.image not in row_of]
        if missing:
            raise DataError(
                f"--data.soft_targets {self.soft_targets}: no row for {len(missing)} images of"
                f" {TRAIN_CSV} (first: {missing[0]})"
            )
        return soft[[row_of[sample.image] for sample in self.samples]].astype(np.float32)

    def _labelled_set(self, indices: np.ndarray, targets: np.ndarray, train: bool) -> ImageDataset:
        """The ``train.csv`` rows at ``indices``, with training or evaluation transforms."""
        return ImageDataset(
            self.images_dir(TRAIN_IMAGES),
            [self.samples[i].image for i in indices],
            build_transforms(self.image_size, train=train),
            targets[indices],
            decode_size=self.image_size,
        )

    def _loader(self, dataset: ImageDataset | None, shuffle: bool) -> DataLoader:
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
        """The validation fold again (the competition's test labels are hidden): ``test`` reports
        the validation score, not an estimate on unseen images."""
        return self._loader(self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)
