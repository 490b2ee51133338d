"""Run a function over many tasks in worker processes, surviving a worker's death and Ctrl-C.

When a worker dies (out of memory, say), the tasks it may have held are retried one at a time in
a process of their own. Workers ignore Ctrl-C (the main process drops what has not started and
hands over what finishes) and exit by themselves when the main process is killed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

TASKS_PER_WORKER = 2  # in flight at once: few enough to know which ones a dead worker held

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(Exception):
    """The worker process running a task died (the task is the likely cause)."""


def run_in_worker_processes(
    function: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    handle: Callable[[R], None],
    fail: Callable[[T, BaseException], None],
) -> None:
    """Run ``function`` (module-level: it is pickled) on each task in ``workers`` processes and
    pass each result to ``handle``; ``fail(task, exc)`` gets a task whose call raised ``exc`` or
    whose worker process died twice (``WorkerDied``)."""

    def finish(future: Future, task: T) -> None:
        exc = future.exception()
        if exc is None:
            handle(future.result())
        else:
            fail(task, exc)

    queue = deque(tasks)
    while queue:
        suspects = deque(
            _run_until_a_worker_dies(function, finish, queue, workers, TASKS_PER_WORKER * workers)
        )
        while suspects:
            for task in _run_until_a_worker_dies(function, finish, suspects, 1, 1):
                fail(task, WorkerDied())


def _run_until_a_worker_dies(
    function: Callable[[T], R],
    finish: Callable[[Future, T], None],
    queue: deque[T],
    workers: int,
    limit: int,
) -> list[T]:
    """Run tasks from ``queue``, at most ``limit`` at a time, in a new pool; return the tasks
    that were in flight if a worker died (empty when the queue was finished)."""
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        in_flight: dict[Future, T] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    task = queue.popleft()
                    try:
                        in_flight[pool.submit(function, task)] = task
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
                        finish(future, task)
                if lost:
                    return lost + list(in_flight.values())
        except BaseException:  # Ctrl-C: drop what has not started, let running tasks finish
            pool.shutdown(wait=True, cancel_futures=True)
            for future, task in in_flight.items():
                if not future.cancelled() and future.exception() is None:
                    finish(future, task)  # so the caller records it
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
