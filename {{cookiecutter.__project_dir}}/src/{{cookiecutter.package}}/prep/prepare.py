"""The ``prepare`` command: fill a cache of pre-resized images, so epochs stop paying for
4000x2672 decodes.

``prepare_cache(DATA_DIR, CACHE_DIR, size)`` writes every image of ``train_images/`` and
``test_images/`` to the same relative path under ``CACHE_DIR`` (``cache.convert_one``: shorter
side ``size``, smaller images kept at their size), on all cores (``worker_pool``). It is
idempotent and resumable: up-to-date files are skipped, and files that cannot be read, or whose
worker process died (killed for memory, say), are listed at the end instead of stopping the run;
a full disk stops it with one line (the images cached so far are kept).

A re-run redoes an image when its cached copy is missing or has another size, when its source's
size or head/tail digest changed, or when its modification time changed and its whole-file digest
did too: a touched or copied source is kept, a changed one is redone even when its modification
time went back. Cached images whose source is gone are deleted. The manifest is saved every few
seconds, so a killed run keeps most of its work.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ..cli.argtypes import command_parser, positive_int
from .cache import (
    Manifest,
    Outcome,
    Task,
    convert_one,
    create_or_read_manifest,
    is_up_to_date,
    write_manifest,
)
from ..utils.atomic import PARTIAL_SUFFIX
from ..utils.errors import DataError, DiskFullError
from ..utils.hardware import available_cores
from ..layout import IMAGE_FOLDERS, TEST_IMAGES, TRAIN_IMAGES, has_image_suffix
from .worker_pool import WorkerDied, run_in_worker_processes

SAVE_INTERVAL = 5.0  # seconds between manifest saves, so a killed run keeps most of its work


@dataclass
class CacheReport:
    """What one ``prepare_cache`` run did."""

    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    removed: int = 0


def prepare_cache(
    data_dir: str | Path,
    cache_dir: str | Path,
    size: int = 512,
    workers: int | None = None,
    progress: bool = True,
) -> CacheReport:
    """Build, complete or refresh the cache of ``data_dir`` in ``cache_dir``; see the module
    docstring."""
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    if size < 16:
        raise DataError(f"--size {size} is too small (16 pixels at least)")
    if not any((data_dir / folder).is_dir() for folder in IMAGE_FOLDERS):
        raise DataError(f"{data_dir}: no {' or '.join(IMAGE_FOLDERS)} folder to cache")
    if cache_dir.resolve() == data_dir.resolve():
        raise DataError("the cache folder must differ from the data folder")
    manifest = create_or_read_manifest(cache_dir, data_dir, size)
    remove_partial_files(cache_dir)
    sources = list_sources(data_dir)
    report = CacheReport(removed=_delete_vanished(cache_dir, data_dir, manifest, sources))
    tasks, report.skipped = stale_or_missing(data_dir, cache_dir, manifest, sources)
    for folder in sources:
        (cache_dir / folder).mkdir(exist_ok=True)
    workers = workers or available_cores()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    saver = _ManifestSaver(cache_dir, manifest)
    try:
        with Progress(*columns, disable=not progress) as bar:
            job = bar.add_task(f"caching at {size}px", total=len(tasks))

            def handle(outcome: Outcome) -> None:
                _apply_outcome(outcome, cache_dir, manifest, report)
                bar.advance(job)
                saver.maybe_save()

            if workers > 1 and len(tasks) > 1:
                run_in_worker_processes(convert_one, tasks, workers, handle, _failure(handle))
            else:
                for task in tasks:
                    handle(convert_one(task))
    finally:
        saver.save()
    return report


def _delete_vanished(
    cache_dir: Path, data_dir: Path, manifest: Manifest, sources: dict[str, list[str]]
) -> int:
    """Delete cached images whose source is gone; take ``data_dir`` as the new source.

    A folder missing from ``data_dir`` is kept (its sources may have been deleted to save space
    after caching) unless the cache is being moved to another data folder.
    """
    moved = manifest.source != str(data_dir.resolve())
    manifest.source = str(data_dir.resolve())
    present = {f"{folder}/{name}" for folder, names in sources.items() for name in names}
    vanished = [
        rel
        for rel in manifest.files
        if rel not in present and (moved or rel.split("/", 1)[0] in sources)
    ]
    for rel in vanished:
        (cache_dir / rel).unlink(missing_ok=True)
        del manifest.files[rel]
    return len(vanished)


def _apply_outcome(
    outcome: Outcome, cache_dir: Path, manifest: Manifest, report: CacheReport
) -> None:
    """Enter an outcome in the manifest and the report; a failed image's old cached copy is
    deleted (it would be stale)."""
    if outcome.record is None:
        report.failed.append(outcome.error or f"{outcome.rel}: failed")
        manifest.files.pop(outcome.rel, None)
        (cache_dir / outcome.rel).unlink(missing_ok=True)
        return
    manifest.files[outcome.rel] = outcome.record
    if outcome.converted:
        report.written += 1
    else:
        report.skipped += 1


def _failure(handle: Callable[[Outcome], None]) -> Callable[[Task, BaseException], None]:
    """What the worker pool calls for an image whose conversion raised or killed its worker."""

    def fail(task: Task, exc: BaseException) -> None:
        if isinstance(exc, DiskFullError):  # every image after it would fail too
            raise exc
        if isinstance(exc, WorkerDied):
            error = f"{task.source}: the worker process converting it died (out of memory?)"
        else:
            error = f"{task.source}: {type(exc).__name__}: {exc}"
        handle(Outcome(task.rel, None, error, False))

    return fail


class _ManifestSaver:
    """Writes the manifest at most every ``SAVE_INTERVAL`` seconds, and once at the end."""

    def __init__(self, cache_dir: Path, manifest: Manifest) -> None:
        self.cache_dir, self.manifest = cache_dir, manifest
        self.last = time.monotonic()

    def maybe_save(self) -> None:
        if time.monotonic() - self.last >= SAVE_INTERVAL:
            self.save()

    def save(self) -> None:
        write_manifest(self.cache_dir, self.manifest)
        self.last = time.monotonic()


def remove_partial_files(cache_dir: Path) -> None:
    """Delete the temporary files of an interrupted run (no image name ends like them)."""
    for folder in (cache_dir, *(cache_dir / name for name in IMAGE_FOLDERS)):
        if folder.is_dir():
            for partial in folder.glob(f"*{PARTIAL_SUFFIX}"):
                partial.unlink(missing_ok=True)


def list_sources(data_dir: Path) -> dict[str, list[str]]:
    """Image names per cached folder that exists in ``data_dir`` (other files are not cached)."""
    sources = {}
    for folder in IMAGE_FOLDERS:
        if (data_dir / folder).is_dir():
            sources[folder] = sorted(
                entry.name
                for entry in os.scandir(data_dir / folder)
                if entry.is_file() and has_image_suffix(entry.name)
            )
    return sources


def stale_or_missing(
    data_dir: Path, cache_dir: Path, manifest: Manifest, sources: dict[str, list[str]]
) -> tuple[list[Task], int]:
    """The images to (re)convert, and how many are up to date already."""
    tasks, done = [], 0
    for folder, names in sources.items():
        for name in names:
            rel = f"{folder}/{name}"
            source, target = data_dir / folder / name, cache_dir / folder / name
            record = manifest.files.get(rel)
            if is_up_to_date(source, target, record):
                done += 1
            else:
                tasks.append(Task(rel, str(source), str(target), manifest.size, record))
    return tasks, done


def run_command(argv: Sequence[str]) -> int:
    """``prepare DATA_DIR CACHE_DIR [--size N] [--workers N]``; returns the exit code."""
    parser = command_parser(
        "prepare",
        f"Pre-resize {TRAIN_IMAGES}/ and {TEST_IMAGES}/ of DATA_DIR into CACHE_DIR"
        " (resumable; train with --data.cache_dir CACHE_DIR).",
    )
    parser.add_argument("data_dir", type=Path, help="the Kaggle-layout data folder")
    parser.add_argument("cache_dir", type=Path, help="where the resized copies go")
    parser.add_argument(
        "--size", type=positive_int, default=512, help="shorter side in pixels (512)"
    )
    parser.add_argument("--workers", type=positive_int, default=None, help="processes (all cores)")
    args = parser.parse_args(argv)
    try:
        report = prepare_cache(args.data_dir, args.cache_dir, args.size, args.workers)
    except KeyboardInterrupt:  # the command line ends with this line, exit code 130 / 143
        raise KeyboardInterrupt(
            f"finished images are kept in {args.cache_dir}; run the same command again to resume"
        ) from None
    return _print_report(report, args.cache_dir)


def _print_report(report: CacheReport, cache_dir: Path) -> int:
    """One summary line on stdout, the unreadable files on stderr; the exit code (1 if any)."""
    removed = f", {report.removed} stale copies removed" if report.removed else ""
    print(
        f"cached {report.written} images, {report.skipped} already done,"
        f" {len(report.failed)} unreadable{removed} -> {cache_dir}"
    )
    if report.failed:
        print(f"{len(report.failed)} files could not be cached:", file=sys.stderr)
        for line in report.failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
