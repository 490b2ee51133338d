"""The Kaggle data layout, named once: the file and folder names, and which files are images
(a ``prepare`` cache repeats the two image folders). This module imports nothing heavy."""

from __future__ import annotations

from pathlib import PurePath

TRAIN_CSV = "train.csv"
TRAIN_IMAGES = "train_images"
TEST_IMAGES = "test_images"
SAMPLE_SUBMISSION = "sample_submission.csv"
IMAGE_FOLDERS = (TRAIN_IMAGES, TEST_IMAGES)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def has_image_suffix(name: str) -> bool:
    """Whether the file ``name`` ends like an image (any case): what ``prepare`` caches."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def not_an_image(name: str) -> str | None:
    """Why the file ``name`` is not taken as an image to predict, or ``None`` if it is one
    (hidden files and macOS ``._*`` resource files are refused even with an image suffix)."""
    if name.startswith("._"):
        return "a macOS resource-fork file"
    if name.startswith("."):
        return "a hidden file"
    if not has_image_suffix(name):
        suffix = PurePath(name).suffix or "(none)"
        return f"suffix {suffix} is not one of {' '.join(IMAGE_SUFFIXES)}"
    return None
