"""A pre-resized copy of a Kaggle image folder, so epochs stop paying for 4000x2672 decodes.

``prepare_cache(DATA_DIR, CACHE_DIR, size)`` writes every image of ``train_images/`` and
``test_images/`` to the same relative path under ``CACHE_DIR`` as an upright RGB JPEG whose
shorter side is ``size`` (smaller images are kept at their size), using all cores. It is
idempotent and resumable: finished files are skipped, each file appears atomically, and files
that cannot be read are listed at the end instead of stopping the run.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from .errors import DataError
from .hardware import available_cores
from .images import IMAGE_SUFFIXES, load_image

FOLDERS = ("train_images", "test_images")
MANIFEST = "cache.json"
JPEG_QUALITY = 95


@dataclass
class CacheReport:
    """What one ``prepare_cache`` run did."""

    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def resize_one(task: tuple[str, str, int]) -> str | None:
    """Write the cached copy of one image; return an error line instead of raising."""
    source, target, size = task
    target_path = Path(target)
    tmp = target_path.with_name(f".tmp-{target_path.name}")
    try:
        image = load_image(source, min_size=size)
        scale = size / min(image.size)
        if scale < 1:
            new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        image.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, target_path)
    except DataError as exc:
        tmp.unlink(missing_ok=True)
        return str(exc)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return f"{source}: cannot write {target} ({exc})"
    return None


def check_manifest(cache_dir: Path, size: int) -> None:
    """Record ``size`` in the cache folder, or refuse a folder built at another size."""
    manifest = cache_dir / MANIFEST
    if manifest.is_file():
        built = json.loads(manifest.read_text()).get("size")
        if built != size:
            raise DataError(
                f"{cache_dir}: cache was built with --size {built}, not {size};"
                " use another folder or delete this one"
            )
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"size": size}) + "\n")


def cache_size(cache_dir: str | Path) -> int:
    """The ``--size`` a cache folder was built with; ``DataError`` if it is not a cache."""
    manifest = Path(cache_dir) / MANIFEST
    if not manifest.is_file():
        raise DataError(f"{cache_dir}: not an image cache (no {MANIFEST}); build it with prepare")
    return int(json.loads(manifest.read_text())["size"])


def plan(data_dir: Path, cache_dir: Path, size: int) -> tuple[list[tuple[str, str, int]], int]:
    """The images still to convert, and how many are done already."""
    tasks, done = [], 0
    for folder in FOLDERS:
        source_dir = data_dir / folder
        if not source_dir.is_dir():
            continue
        target_dir = cache_dir / folder
        target_dir.mkdir(parents=True, exist_ok=True)
        for stale in target_dir.glob(".tmp-*"):
            stale.unlink()
        for entry in sorted(os.scandir(source_dir), key=lambda e: e.name):
            if not entry.is_file() or not entry.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            target = target_dir / entry.name
            if target.is_file() and target.stat().st_mtime >= entry.stat().st_mtime:
                done += 1
            else:
                tasks.append((entry.path, str(target), size))
    return tasks, done


def prepare_cache(
    data_dir: str | Path,
    cache_dir: str | Path,
    size: int = 512,
    workers: int | None = None,
    progress: bool = True,
) -> CacheReport:
    """Build or complete the cache of ``data_dir`` in ``cache_dir``; see the module docstring."""
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    if size < 16:
        raise DataError(f"--size {size} is too small (16 pixels at least)")
    if not any((data_dir / folder).is_dir() for folder in FOLDERS):
        raise DataError(f"{data_dir}: no {' or '.join(FOLDERS)} folder to cache")
    if cache_dir.resolve() == data_dir.resolve():
        raise DataError("the cache folder must differ from the data folder")
    check_manifest(cache_dir, size)
    tasks, done = plan(data_dir, cache_dir, size)
    report = CacheReport(skipped=done)
    workers = workers or available_cores()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        job = bar.add_task(f"caching at {size}px", total=len(tasks))
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(resize_one, tasks, chunksize=8)
                for error in results:
                    _count(report, error)
                    bar.advance(job)
        else:
            for task in tasks:
                _count(report, resize_one(task))
                bar.advance(job)
    return report


def _count(report: CacheReport, error: str | None) -> None:
    if error is None:
        report.written += 1
    else:
        report.failed.append(error)
