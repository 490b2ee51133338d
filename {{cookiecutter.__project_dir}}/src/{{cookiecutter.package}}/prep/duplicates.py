"""Near-duplicate images, the groups ``fit`` and ``cv`` keep in one fold and ``report`` lists.

Two images are duplicates if their bytes are identical (``image_checks.duplicate_groups``) or
if their perceptual hashes (``images.perceptual_hash``: ImageHash's 64-bit ``dhash``) differ in
at most ``distance`` bits; groups are joined transitively (a resized copy of a cropped copy
joins both). ``dhash`` rather than ``phash``: on the sample images it kept every distinct pair
9 bits apart or more while grouping as many resized, re-encoded and 2 %-cropped copies at
distance 8 as ``phash`` did at 6, where ``phash`` already joined four distinct pairs. The hashes
come from the ``prepare`` cache's manifest, or are remembered per folder like the digests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import PIL

from ..images import HASH_DECODE_SIDE, bomb_warnings_ignored, perceptual_hash
from ..utils.constraints import DuplicateDistance, check_range
from ..utils.errors import DataError
from .cache import HASH_FIELD, read_manifest
from .image_checks import duplicate_groups, remembered

DUPLICATE_DISTANCE = 8  # bits of 64; see the module docstring and the README for the measures
BLOCK = 1024  # hashes compared at once against all the others (8 MB per block at 18,632)


def image_hashes(folder: Path, names: Sequence[str], cache_dir: Path | None = None) -> list[str]:
    """The perceptual hash of each of ``names`` in ``folder``: from the manifest of a ``prepare``
    cache (no file is read), else remembered since the last run for unchanged files of a large
    folder (``image_checks.remembered``)."""
    if cache_dir is not None:
        files = read_manifest(cache_dir).files
        records = [files.get(f"{folder.name}/{name}", {}) for name in names]
        missing = [name for name, record in zip(names, records) if HASH_FIELD not in record]
        if missing:
            raise DataError(
                f"{cache_dir}: has no perceptual hash of {folder.name}/{missing[0]} (an older"
                f" prepare made it); run prepare {folder.parent} {cache_dir} again to add them"
            )
        return [record[HASH_FIELD] for record in records]
    import imagehash  # here: the offline inference path imports this module through data.py

    # The stamp: what must match for remembered hashes to be trusted (see image_checks).
    hasher = (
        f"ImageHash {imagehash.__version__} dhash, Pillow {PIL.__version__}, {HASH_DECODE_SIDE}px"
    )
    with bomb_warnings_ignored():
        known, fresh = remembered(
            folder, names, (HASH_FIELD, hasher, "hashing"), perceptual_hash, lambda h: [h]
        )
    return [fresh[name] if name in fresh else known[name][-1] for name in names]


def close_pairs(hashes: Sequence[str], distance: int) -> Iterable[tuple[int, int]]:
    """The index pairs ``(i, j)``, ``i < j``, of ``hashes`` (hexadecimal) at most ``distance``
    bits apart."""
    values = np.array([int(value, 16) for value in hashes], dtype=np.uint64)
    for start in range(0, len(values), BLOCK):
        block = values[start : start + BLOCK]
        near = np.bitwise_count(block[:, None] ^ values[None, :]) <= distance
        for row, column in zip(*np.nonzero(near)):
            if column > start + row:
                yield start + int(row), int(column)


def near_duplicate_groups(
    folder: Path,
    names: Sequence[str],
    distance: int = DUPLICATE_DISTANCE,
    cache_dir: Path | None = None,
) -> list[list[str]]:
    """Groups (two images or more, each sorted, in ``names`` order of their first) of ``names``
    in ``folder`` that are identical or within ``distance`` bits of perceptual hash, joined
    transitively; ``DataError`` naming an unreadable file or a ``distance`` out of range."""
    distance = int(check_range("duplicate_distance", distance, DuplicateDistance))
    index = {name: number for number, name in enumerate(names)}
    parent = list(range(len(names)))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    identical = duplicate_groups(folder, names, cache_dir)
    pairs = [(index[group[0]], index[name]) for group in identical for name in group[1:]]
    for first, second in [*pairs, *close_pairs(image_hashes(folder, names, cache_dir), distance)]:
        parent[root(first)] = root(second)
    members: dict[int, list[str]] = {}
    for name in names:
        members.setdefault(root(index[name]), []).append(name)
    return [sorted(group) for group in members.values() if len(group) > 1]
