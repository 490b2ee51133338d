"""``prepare``: a cache of pre-resized images, filled on all cores; a re-run resumes, skips what
is up to date and deletes stale copies. Unreadable images are listed at the end, images whose worker
died are retried one at a time, and a full disk stops the run."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from ..cli.argtypes import command_parser, positive_int
from .cache import Manifest, Outcome, Task, convert_one, create_or_read_manifest, write_manifest
from .cache import is_up_to_date
from .image_checks import progress_bar
from ..utils.atomic import PARTIAL_SUFFIX
from ..utils.errors import DataError, DiskFullError
from ..utils.hardware import available_cores
from ..layout import IMAGE_FOLDERS, TEST_IMAGES, TRAIN_IMAGES, has_image_suffix

SAVE_INTERVAL = 5.0  # seconds between manifest saves, so a killed run keeps most of its work
TASKS_PER_WORKER = 2  # in flight at once: few enough to know which ones a dead worker held


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
    """Build, complete or refresh the cache of ``data_dir`` in ``cache_dir``."""
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    if size < 16:
        raise DataError(f"--size {size} is too small (16 pixels at least)")
    folders = [folder for folder in IMAGE_FOLDERS if (data_dir / folder).is_dir()]
    if not folders:
        raise DataError(f"{data_dir}: no {' or '.join(IMAGE_FOLDERS)} folder to cache")
    if cache_dir.resolve() == data_dir.resolve():
        raise DataError("the cache folder must differ from the data folder")
    manifest = create_or_read_manifest(cache_dir, data_dir, size)
    for parent in (cache_dir, *(cache_dir / name for name in IMAGE_FOLDERS)):
        for partial in parent.glob(f"*{PARTIAL_SUFFIX}"):  # left by an interrupted run
            partial.unlink(missing_ok=True)
    sources = [  # the images (other files are not cached) of the folders data_dir has
        f"{folder}/{name}"
        for folder in folders
        for name in sorted(entry.name for entry in os.scandir(data_dir / folder) if entry.is_file())
        if has_image_suffix(name)
    ]
    report = CacheReport(removed=_delete_vanished(cache_dir, data_dir, manifest, sources, folders))
    tasks = [
        Task(rel, str(data_dir / rel), str(cache_dir / rel), size, manifest.files.get(rel))
        for rel in sources
    ]
    tasks = [task for task in tasks if not is_up_to_date(task)]
    report.skipped = len(sources) - len(tasks)
    for folder in folders:
        (cache_dir / folder).mkdir(exist_ok=True)
    workers = workers or available_cores()
    saved = time.monotonic()
    try:
        with progress_bar(disable=not progress) as bar:
            job = bar.add_task(f"caching at {size}px", total=len(tasks))

            def handle(outcome: Outcome) -> None:
                nonlocal saved
                if outcome.record is None:  # a failed image's stale copy goes
                    report.failed.append(str(outcome.error))
                    manifest.files.pop(outcome.rel, None)
                    (cache_dir / outcome.rel).unlink(missing_ok=True)
                else:
                    manifest.files[outcome.rel] = outcome.record
                    report.written += outcome.converted  # else confirmed by content
                    report.skipped += not outcome.converted
                bar.advance(job)
                if time.monotonic() - saved >= SAVE_INTERVAL:
                    write_manifest(cache_dir, manifest)
                    saved = time.monotonic()

            if workers > 1 and len(tasks) > 1:
                run_in_worker_processes(tasks, workers, handle)
            else:
                for task in tasks:
                    handle(convert_one(task))
    finally:
        write_manifest(cache_dir, manifest)
    return report


def _delete_vanished(
    cache_dir: Path, data_dir: Path, manifest: Manifest, sources: list[str], folders: list[str]
) -> int:
    """Delete cached images whose source is gone; take ``data_dir`` as the new source. A folder
    missing from ``data_dir`` is kept (deleted to save space?) unless the data folder moved."""
    moved = manifest.source != str(data_dir.resolve())
    manifest.source = str(data_dir.resolve())
    present = set(sources)
    vanished = [
        rel
        for rel in manifest.files
        if rel not in present and (moved or rel.split("/", 1)[0] in folders)
    ]
    for rel in vanished:
        (cache_dir / rel).unlink(missing_ok=True)
        del manifest.files[rel]
    return len(vanished)


def run_in_worker_processes(
    tasks: Iterable[Task], workers: int, handle: Callable[[Outcome], None]
) -> None:
    """Run ``convert_one`` on each task in ``workers`` processes and pass each outcome to
    ``handle``; a task that raised, or whose worker process died twice, fails with its reason."""
    queue, limit = deque(tasks), TASKS_PER_WORKER * workers
    while queue:
        suspects = deque(_run_until_a_worker_dies(handle, queue, workers, limit))
        while suspects:  # one at a time, each in a process of its own
            for task in _run_until_a_worker_dies(handle, suspects, 1, 1):
                error = f"{task.source}: the worker process converting it died (out of memory?)"
                handle(Outcome(task.rel, None, error, False))


def _run_until_a_worker_dies(
    handle: Callable[[Outcome], None], queue: deque[Task], workers: int, limit: int
) -> list[Task]:
    """Run tasks from ``queue``, at most ``limit`` at a time, in a new pool; return those in
    flight if a worker died (empty once the queue is done)."""
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
                    task, exc = in_flight.pop(future), future.exception()
                    if isinstance(exc, BrokenProcessPool):
                        lost.append(task)
                    elif isinstance(exc, DiskFullError):  # every image after it would fail too
                        raise exc
                    elif exc is not None:
                        error = f"{task.source}: {type(exc).__name__}: {exc}"
                        handle(Outcome(task.rel, None, error, False))
                    else:
                        handle(future.result())
                if lost:
                    return lost + list(in_flight.values())
        except BaseException:  # Ctrl-C: drop what has not started, let running tasks finish
            pool.shutdown(wait=True, cancel_futures=True)
            for future in in_flight:
                if not future.cancelled() and future.exception() is None:
                    handle(future.result())  # so the caller records it
            raise
    return []


def _init_worker() -> None:
    """Leave Ctrl-C to the main process, and exit when the main process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def run_command(argv: Sequence[str]) -> int:
    """``prepare DATA_DIR CACHE_DIR [--size N] [--workers N]``; returns the exit code (1 if an
    image could not be cached)."""
    parser = command_parser(
        "prepare",
        f"Pre-resize {TRAIN_IMAGES}/ and {TEST_IMAGES}/ of DATA_DIR into CACHE_DIR"
        " (resumable; train with --data.cache_dir CACHE_DIR).",
    )
    parser.add_argument("data_dir", type=Path, help="the Kaggle-layout data folder")
    parser.add_argument("cache_dir", type=Path, help="where the resized copies go")
    parser.add_argument("--size", type=positive_int, default=512, help="shorter side, pixels (512)")
    parser.add_argument("--workers", type=positive_int, default=None, help="processes (all cores)")
    args = parser.parse_args(argv)
    try:
        report = prepare_cache(args.data_dir, args.cache_dir, args.size, args.workers)
    except KeyboardInterrupt:  # the command line ends with this line, exit code 130 / 143
        raise KeyboardInterrupt(
            f"finished images are kept in {args.cache_dir}; run the same command again to resume"
        ) from None
    removed = f", {report.removed} stale copies removed" if report.removed else ""
    print(
        f"cached {report.written} images, {report.skipped} already done,"
        f" {len(report.failed)} unreadable{removed} -> {args.cache_dir}"
    )
    if report.failed:
        print(f"{len(report.failed)} files could not be cached:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in report.failed), file=sys.stderr)
    return 1 if report.failed else 0
