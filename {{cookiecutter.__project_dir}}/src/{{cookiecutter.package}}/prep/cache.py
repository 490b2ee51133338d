"""The image cache ``prepare`` fills: its manifest ``cache.json`` (per image, its source's
fingerprint, digest and perceptual hash, the copy's size), one image's copy, ``check_cache``
before training."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from ..utils.atomic import atomic_write, write_json
from ..utils.errors import DataError
from ..utils.jsonfile import field, read_json
from ..images import bomb_warnings_ignored, file_digest, load_image, perceptual_hash
from ..layout import IMAGE_FOLDERS

MANIFEST = "cache.json"
MANIFEST_FORMAT = 2
HEAD_TAIL_BYTES = 8192
RECORD_FIELDS = ("size", "mtime_ns", "head_tail", "digest", "cached_size")
HASH_FIELD = "dhash"  # added by a later version: a record without it is completed by prepare
JPEG_QUALITY = 95


@dataclass
class Manifest:
    """The contents of ``cache.json``; ``files`` maps ``"train_images/x.jpg"`` to its record."""

    size: int
    source: str
    files: dict[str, dict[str, Any]]


class Task(NamedTuple):
    """One image to convert; ``previous`` is its record from an earlier run, if any."""

    rel: str
    source: str
    target: str
    size: int
    previous: dict[str, Any] | None


class Outcome(NamedTuple):
    """What became of a task: the new record, or the error line."""

    rel: str
    record: dict[str, Any] | None
    error: str | None
    converted: bool


def read_manifest(cache_dir: str | Path) -> Manifest:
    """Parse ``cache.json`` of ``cache_dir``; one-line ``DataError`` if it is absent or damaged."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{cache_dir}: not an image cache (no {MANIFEST}); build it with prepare")
    again = f"; delete {cache_dir} and run prepare again"
    return read_json(path, _parse_manifest, "cache manifest", again)


def _parse_manifest(data: Any) -> Manifest:
    if field(data, "format", int) != MANIFEST_FORMAT:
        raise DataError(f"format {data['format']!r}, expected {MANIFEST_FORMAT}")
    files = field(data, "files", dict)
    for rel, record in files.items():
        if not isinstance(record, dict) or any(name not in record for name in RECORD_FIELDS):
            raise DataError(f"the record of {rel} is incomplete")
    return Manifest(field(data, "size", int, minimum=1), field(data, "source", str), files)


def write_manifest(cache_dir: Path, manifest: Manifest) -> None:
    """Replace ``cache.json`` atomically."""
    write_json(cache_dir / MANIFEST, {"format": MANIFEST_FORMAT, **asdict(manifest)}, indent=0)


def refuse_unless_new(folder: Path, instead: str = "") -> None:
    """``DataError`` if ``folder`` exists and is not an empty folder (``instead``: or else what)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DataError(f"{folder}: already exists and is not an empty folder{instead}")


def create_or_read_manifest(cache_dir: Path, data_dir: Path, size: int) -> Manifest:
    """The manifest of the cache at ``size`` in ``cache_dir``, or a new empty cache there."""
    if (cache_dir / MANIFEST).exists():
        manifest = read_manifest(cache_dir)
        if manifest.size != size:
            raise DataError(
                f"{cache_dir}: cache was built with --size {manifest.size}, not {size};"
                " use another folder or delete this one"
            )
        return manifest
    refuse_unless_new(cache_dir, f" or an image cache (no {MANIFEST}); use a new folder")
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(size, str(data_dir.resolve()), {})
    write_manifest(cache_dir, manifest)
    return manifest


def check_cache(cache_dir: str | Path, data_dir: str | Path, image_size: int) -> None:
    """``DataError`` unless the cache is sound, at least ``image_size``, built from ``data_dir``
    and up to date (a deleted source is fine: training reads the cache)."""
    cache_dir, data_dir = Path(cache_dir), Path(data_dir)
    manifest = read_manifest(cache_dir)
    if manifest.size < image_size:
        raise DataError(
            f"{cache_dir}: cache was built at {manifest.size}px, smaller than image_size"
            f" {image_size}; rebuild it with prepare --size {image_size} or more"
        )
    if Path(manifest.source) != data_dir.resolve():
        raise DataError(
            f"{cache_dir}: cache was built from {manifest.source}, not {data_dir.resolve()};"
            f" run prepare {data_dir} {cache_dir} to update it, or pass that --data.data_dir"
        )
    redo = f"run prepare {data_dir} {cache_dir} again"
    for rel, record in manifest.files.items():
        if file_size(cache_dir / rel) != record["cached_size"]:
            raise DataError(f"{cache_dir / rel}: missing or changed since prepare wrote it; {redo}")
        source = stat_key(data_dir / rel)
        if source is not None and source != [record["size"], record["mtime_ns"]]:
            raise DataError(f"{data_dir / rel}: changed since it was cached in {cache_dir}; {redo}")


def cached_names(folder: Path) -> set[str] | None:
    """The images a cache holds in ``folder`` (``CACHE/train_images``, say); None if not a cache."""
    if folder.name not in IMAGE_FOLDERS or not (folder.parent / MANIFEST).is_file():
        return None
    prefix = f"{folder.name}/"
    files = read_manifest(folder.parent).files
    return {rel[len(prefix) :] for rel in files if rel.startswith(prefix)}


def stat_key(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of the file ``path``, or ``None`` if it is missing or unreadable."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def file_size(path: Path) -> int | None:
    """The size of the file ``path`` in bytes, or ``None`` if it cannot be read."""
    key = stat_key(path)
    return None if key is None else key[0]


def source_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time (ns) and a digest of the first and last 8 KiB of ``path``."""
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        head = handle.read(HEAD_TAIL_BYTES)
        handle.seek(max(HEAD_TAIL_BYTES, stat.st_size - HEAD_TAIL_BYTES))
        tail = handle.read(HEAD_TAIL_BYTES)
    digest = hashlib.blake2b(head + tail, digest_size=16).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_tail": digest}


def is_up_to_date(task: Task) -> bool:
    """Whether the task's copy is that of its source as it is now, by the cheap checks (a changed
    modification time alone is left to ``convert_one``'s digest)."""
    if task.previous is None or file_size(Path(task.target)) != task.previous["cached_size"]:
        return False
    if HASH_FIELD not in task.previous:
        return False
    try:
        now = source_fingerprint(Path(task.source))
    except OSError:
        return False
    return all(now[name] == task.previous[name] for name in ("size", "mtime_ns", "head_tail"))


def source_hash(source: Path) -> str:
    """``perceptual_hash`` of a source image (``prep.duplicates`` reads it from the manifest)."""
    with bomb_warnings_ignored():
        return perceptual_hash(source)


def convert_one(task: Task) -> Outcome:
    """Write the cached copy of one image (or confirm it by content); raises only
    ``DiskFullError``, which would fail every later image too."""
    source, target, previous = Path(task.source), Path(task.target), task.previous
    try:
        now = {**source_fingerprint(source), "digest": file_digest(source)}
    except OSError as exc:
        return Outcome(task.rel, None, f"{source}: cannot read ({exc})", False)
    if (
        previous is not None
        and file_size(target) == previous["cached_size"]
        and all(now[name] == previous[name] for name in ("size", "head_tail", "digest"))
    ):
        try:
            now[HASH_FIELD] = previous.get(HASH_FIELD) or source_hash(source)
        except DataError as exc:
            return Outcome(task.rel, None, str(exc), False)
        return Outcome(task.rel, {**previous, **now}, None, False)
    try:
        # Not durable: a lost or cut image fails the size check of its manifest record and is
        # converted again; two fsyncs per image would slow a cache of 18,632 images.
        with atomic_write(target, durable=False) as partial:  # a full disk names target
            now[HASH_FIELD] = source_hash(source)
            image = load_image(source, min_size=task.size)
            scale = task.size / min(image.size)
            if scale < 1:
                new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            image.save(partial, format="JPEG", quality=JPEG_QUALITY)
            cached_size = partial.stat().st_size
    except DataError as exc:
        return Outcome(task.rel, None, str(exc), False)
    except MemoryError:
        return Outcome(task.rel, None, f"{source}: out of memory while converting it", False)
    except OSError as exc:
        return Outcome(task.rel, None, f"{source}: cannot write {target} ({exc})", False)
    return Outcome(task.rel, {**now, "cached_size": cached_size}, None, True)
