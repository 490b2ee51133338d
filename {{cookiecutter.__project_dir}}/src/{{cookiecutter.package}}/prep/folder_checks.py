"""Checks, before anything is written, that the image folders hold what a stage will read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .cache import cached_names
from ..utils.errors import DataError
from .image_checks import check_image_header, find_unreadable
from ..labels import Sample
from ..layout import IMAGE_SUFFIXES, not_an_image


def list_images(folder: Path) -> list[str]:
    """Sorted names of the images in ``folder`` (sub-folders ignored); any other file is a
    ``DataError`` naming it, not a silently shorter submission."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files = sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
    left_out = [f"{name} ({reason})" for name in files if (reason := not_an_image(name))]
    if left_out:
        shown = "; ".join(left_out[:5]) + ("; ..." if len(left_out) > 5 else "")
        raise DataError(
            f"{folder}: {len(left_out)} file(s) would be left out of the predictions: {shown};"
            " move them out of the folder"
        )
    if not files:
        raise DataError(f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return files


def check_listed_images(csv_path: Path, folder: Path, samples: Sequence[Sample]) -> None:
    """Every image listed in the CSV exists in ``folder`` and decodes, checked before any epoch
    (a cache's images, which prepare decoded, by their headers only)."""
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


def check_cached(names: Sequence[str], folder: Path) -> None:
    """``DataError`` unless the cache folder ``folder`` holds every image of ``names``."""
    cached = set(os.listdir(folder)) if folder.is_dir() else set()
    missing = sorted(set(names) - cached)
    if missing:
        raise DataError(
            f"{folder}: {len(missing)} test images are not cached (first: {missing[0]});"
            " run prepare again"
        )
