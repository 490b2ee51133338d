"""A pre-resized copy of a Kaggle image folder, so epochs stop paying for 4000x2672 decodes.

``prepare_cache(DATA_DIR, CACHE_DIR, size)`` writes every image of ``train_images/`` and
``test_images/`` to the same relative path under ``CACHE_DIR`` as an upright RGB JPEG whose
shorter side is ``size`` (smaller images are kept at their size), using all cores. It is
idempotent and resumable: up-to-date files are skipped, each file appears atomically (temporary
files end in ``.partial``, which no image name does), and files that cannot be read, or whose
worker process died (killed for memory, say), are listed at the end instead of stopping the run.
Worker processes ignore Ctrl-C (the main process winds them down) and exit by themselves when the
main process is killed.

The manifest ``cache.json`` records the size, the data folder the cache was built from and, per
image, its source's size, modification time, a digest of its first and last 8 KiB, a digest of
the whole file, and the cached file's size. A re-run redoes an image when its cached copy is
missing or has another size, when its source's size or head/tail digest changed, or when its
modification time changed and its whole-file digest did too: a touched or copied source is kept,
a changed one is redone even when its modification time went back. Cached images whose source is
gone are deleted. ``check_cache`` refuses, before training, a cache that is damaged, stale, too
small or built from another data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from .errors import DataError
from .hardware import available_cores
from .images import IMAGE_SUFFIXES, load_image

FOLDERS = ("train_images", "test_images")
MANIFEST = "cache.json"
MANIFEST_FORMAT = 2
JPEG_QUALITY = 95
PARTIAL_SUFFIX = ".partial"
HEAD_TAIL_BYTES = 8192
SAVE_INTERVAL = 5.0  # seconds between manifest saves, so a killed run keeps most of its work
TASKS_PER_WORKER = 2  # in flight at once: few enough to know which ones a dead worker held
RECORD_FIELDS = ("size", "mtime_ns", "head_tail", "digest", "cached_size")


@dataclass
class CacheReport:
    """What one ``prepare_cache`` run did."""

    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    removed: int = 0


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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _parse_manifest(data)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(
            f"{path}: not a valid cache manifest ({reason}); delete {cache_dir} and run prepare"
            " again"
        ) from None


def _parse_manifest(data: Any) -> Manifest:
    """Check the structure of the decoded JSON; ``ValueError`` saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {MANIFEST_FORMAT}")
    size, source, files = data.get("size"), data.get("source"), data.get("files")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size {size!r} is not a positive integer")
    if not isinstance(source, str) or not source:
        raise ValueError(f"source {source!r} is not a folder")
    if not isinstance(files, dict):
        raise ValueError("files is not an object")
    for rel, record in files.items():
        if not isinstance(record, dict) or any(name not in record for name in RECORD_FIELDS):
            raise ValueError(f"the record of {rel} is incomplete")
    return Manifest(size, source, files)


def write_manifest(cache_dir: Path, manifest: Manifest) -> None:
    """Replace ``cache.json`` atomically."""
    data = {"format": MANIFEST_FORMAT, "size": manifest.size, "source": manifest.source}
    text = json.dumps({**data, "files": manifest.files}, indent=0)
    partial = cache_dir / f"{MANIFEST}.{os.getpid()}{PARTIAL_SUFFIX}"
    partial.write_text(text + "\n", encoding="utf-8")
    os.replace(partial, cache_dir / MANIFEST)


def create_or_read_manifest(cache_dir: Path, data_dir: Path, size: int) -> Manifest:
    """The manifest of an existing cache at ``size``, or a new cache folder with an empty one.

    Refuses a cache built at another size and a non-empty folder that is not a cache.
    """
    if (cache_dir / MANIFEST).exists():
        manifest = read_manifest(cache_dir)
        if manifest.size != size:
            raise DataError(
                f"{cache_dir}: cache was built with --size {manifest.size}, not {size};"
                " use another folder or delete this one"
            )
        return manifest
    if cache_dir.exists() and (not cache_dir.is_dir() or any(cache_dir.iterdir())):
        raise DataError(
            f"{cache_dir}: exists and is not an image cache (no {MANIFEST}); use a new folder"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(size, str(data_dir.resolve()), {})
    write_manifest(cache_dir, manifest)
    return manifest


def check_cache(cache_dir: str | Path, data_dir: str | Path, image_size: int) -> None:
    """Before training or predicting from a cache: refuse it if it is damaged, built smaller
    than ``image_size``, built from another data folder, or stale (one-line ``DataError``).

    Stale means a source in ``data_dir`` changed since prepare, or a cached file is missing or
    has another size than prepare wrote (a truncated copy). Sources that were deleted after
    caching are fine: the cache is what training reads.
    """
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
    again = f"run prepare {data_dir} {cache_dir} again"
    for rel, record in manifest.files.items():
        if _file_size(cache_dir / rel) != record["cached_size"]:
            raise DataError(
                f"{cache_dir / rel}: missing or changed since prepare wrote it; {again}"
            )
        source = _stat_or_none(data_dir / rel)
        if source is not None and (source.st_size, source.st_mtime_ns) != (
            record["size"],
            record["mtime_ns"],
        ):
            raise DataError(
                f"{data_dir / rel}: changed since it was cached in {cache_dir}; {again}"
            )


def cached_names(folder: Path) -> set[str] | None:
    """The images a cache holds in ``folder`` (e.g. ``CACHE/train_images``); None if ``folder``
    is not part of a cache."""
    if folder.name not in FOLDERS or not (folder.parent / MANIFEST).is_file():
        return None
    prefix = f"{folder.name}/"
    files = read_manifest(folder.parent).files
    return {rel[len(prefix) :] for rel in files if rel.startswith(prefix)}


def _file_size(path: Path) -> int | None:
    stat = _stat_or_none(path)
    return None if stat is None else stat.st_size


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def source_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time (ns) and a digest of the first and last 8 KiB of ``path``."""
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        head = handle.read(HEAD_TAIL_BYTES)
        handle.seek(max(HEAD_TAIL_BYTES, stat.st_size - HEAD_TAIL_BYTES))
        tail = handle.read(HEAD_TAIL_BYTES)
    digest = hashlib.blake2b(head + tail, digest_size=16).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_tail": digest}


def content_digest(path: Path) -> str:
    """BLAKE2b digest of the whole file."""
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_partial_files(cache_dir: Path) -> None:
    """Delete the temporary files of an interrupted run (no image name ends like them)."""
    for folder in (cache_dir, *(cache_dir / name for name in FOLDERS)):
        if folder.is_dir():
            for partial in folder.glob(f"*{PARTIAL_SUFFIX}"):
                partial.unlink(missing_ok=True)


def list_sources(data_dir: Path) -> dict[str, list[str]]:
    """Image names per cached folder that exists in ``data_dir`` (other files are not cached)."""
    sources = {}
    for folder in FOLDERS:
        if (data_dir / folder).is_dir():
            sources[folder] = sorted(
                entry.name
                for entry in os.scandir(data_dir / folder)
                if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
            )
    return sources


def is_up_to_date(source: Path, target: Path, record: dict[str, Any] | None) -> bool:
    """Whether ``target`` is the cached copy of ``source`` as it is now, by the cheap checks.

    A changed modification time alone is not decided here: the worker compares whole-file
    digests (``convert_one``).
    """
    if record is None or _file_size(target) != record["cached_size"]:
        return False
    try:
        now = source_fingerprint(source)
    except OSError:
        return False
    return all(now[name] == record[name] for name in ("size", "mtime_ns", "head_tail"))


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


def convert_one(task: Task) -> Outcome:
    """Write the cached copy of one image (or confirm it by content); never raises."""
    source, target = Path(task.source), Path(task.target)
    try:
        fingerprint = source_fingerprint(source)
        digest = content_digest(source)
    except OSError as exc:
        return Outcome(task.rel, None, f"{source}: cannot read ({exc})", False)
    previous = task.previous
    if (
        previous is not None
        and _file_size(target) == previous["cached_size"]
        and all(fingerprint[name] == previous[name] for name in ("size", "head_tail"))
        and digest == previous["digest"]
    ):
        return Outcome(task.rel, {**previous, **fingerprint}, None, False)
    partial = target.with_name(f"{target.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        _write_resized(source, partial, task.size)
        cached_size = partial.stat().st_size
        os.replace(partial, target)
    except DataError as exc:
        partial.unlink(missing_ok=True)
        return Outcome(task.rel, None, str(exc), False)
    except MemoryError:
        partial.unlink(missing_ok=True)
        return Outcome(task.rel, None, f"{source}: out of memory while converting it", False)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        return Outcome(task.rel, None, f"{source}: cannot write {target} ({exc})", False)
    record = {**fingerprint, "digest": digest, "cached_size": cached_size}
    return Outcome(task.rel, record, None, True)


def _write_resized(source: Path, target: Path, size: int) -> None:
    """Decode ``source`` upright, shrink its shorter side to ``size``, save it as JPEG."""
    image = load_image(source, min_size=size)
    scale = size / min(image.size)
    if scale < 1:
        new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    image.save(target, format="JPEG", quality=JPEG_QUALITY)


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
    if not any((data_dir / folder).is_dir() for folder in FOLDERS):
        raise DataError(f"{data_dir}: no {' or '.join(FOLDERS)} folder to cache")
    if cache_dir.resolve() == data_dir.resolve():
        raise DataError("the cache folder must differ from the data folder")
    manifest = create_or_read_manifest(cache_dir, data_dir, size)
    remove_partial_files(cache_dir)
    sources = list_sources(data_dir)
    report = CacheReport(removed=_forget_vanished(cache_dir, data_dir, manifest, sources))
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
                _apply(outcome, cache_dir, manifest, report)
                bar.advance(job)
                saver.maybe_save()

            if workers > 1 and len(tasks) > 1:
                run_in_worker_processes(tasks, workers, handle)
            else:
                for task in tasks:
                    handle(convert_one(task))
    finally:
        saver.save()
    return report


def _forget_vanished(
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


def _apply(outcome: Outcome, cache_dir: Path, manifest: Manifest, report: CacheReport) -> None:
    """Record an outcome; a failed image loses its old cached copy (it would be stale)."""
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


def run_in_worker_processes(
    tasks: Iterable[Task], workers: int, handle: Callable[[Outcome], None]
) -> None:
    """Convert ``tasks`` in ``workers`` processes, passing each outcome to ``handle``.

    When a worker process dies, the images it may have held are retried one at a time in a
    process of their own; an image that kills that one too is reported as failed.
    """
    queue = deque(tasks)
    while queue:
        suspects = deque(
            _run_until_a_worker_dies(queue, workers, TASKS_PER_WORKER * workers, handle)
        )
        while suspects:
            for task in _run_until_a_worker_dies(suspects, 1, 1, handle):
                error = f"{task.source}: the worker process converting it died (out of memory?)"
                handle(Outcome(task.rel, None, error, False))


def _run_until_a_worker_dies(
    queue: deque[Task], workers: int, limit: int, handle: Callable[[Outcome], None]
) -> list[Task]:
    """Run tasks from ``queue``, at most ``limit`` at a time, in a new pool; return the tasks
    that were in flight if a worker died (empty when the queue was finished)."""
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        in_flight: dict[Future, Task] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    task = queue.popleft()
                    try:
                        in_flight[pool.submit(convert_one, task)] = task
                    except BrokenProcessPool:
                        queue.appendleft(task)
                        return list(in_flight.values())
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                lost = []
                for future in done:
                    task = in_flight.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        lost.append(task)
                    else:
                        handle(_outcome(future, task))
                if lost:
                    return lost + list(in_flight.values())
        except BaseException:  # Ctrl-C: drop what has not started, let running images finish
            pool.shutdown(wait=True, cancel_futures=True)
            for future, task in in_flight.items():
                if not future.cancelled() and future.exception() is None:
                    handle(future.result())  # so the manifest remembers it
            raise
    return []


def _outcome(future: Future, task: Task) -> Outcome:
    """The outcome of a finished future; an unexpected exception fails that image only."""
    exc = future.exception()
    if exc is None:
        return future.result()
    return Outcome(task.rel, None, f"{task.source}: {type(exc).__name__}: {exc}", False)


def _init_worker() -> None:
    """Leave Ctrl-C to the main process, and exit when the main process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)
