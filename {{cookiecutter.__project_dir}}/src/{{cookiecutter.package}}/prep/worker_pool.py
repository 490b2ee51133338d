"""Run a function over many tasks in worker processes, surviving a worker's death and Ctrl-C.

A worker killed mid-task (by the kernel's out-of-memory killer, say) breaks a
``ProcessPoolExecutor``: the tasks it may have held are retried one at a time in a process of
their own, and a task that kills that one too is reported as failed. Worker processes ignore
Ctrl-C (the main process winds them down: what has not started is dropped, what runs finishes and
is handed over) and exit by themselves when the main process is killed.
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
from dataclasses import dataclass
from typing import Generic, TypeVar

TASKS_PER_WORKER = 2  # in flight at once: few enough to know which ones a dead worker held

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(Exception):
    """The worker process running a task died (the task is the likely cause)."""


@dataclass(frozen=True)
class _Job(Generic[T, R]):
    """The function, and where its results and failures go."""

    function: Callable[[T], R]
    handle: Callable[[R], None]
    fail: Callable[[T, BaseException], None]

    def finish(self, future: Future, task: T) -> None:
        """Hand a finished future's result on; an exception fails that task only."""
        exc = future.exception()
        if exc is None:
            self.handle(future.result())
        else:
            self.fail(task, exc)


def run_in_worker_processes(
    function: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    handle: Callable[[R], None],
    fail: Callable[[T, BaseException], None],
) -> None:
    """Run ``function`` on each task in ``workers`` processes; pass each result to ``handle``.

    ``fail(task, exc)`` gets a task whose call raised ``exc``, or whose worker process died
    twice (``WorkerDied``). ``function`` must be a module-level function (it is pickled).
    """
    job = _Job(function, handle, fail)
    queue = deque(tasks)
    while queue:
        suspects = deque(_run_until_a_worker_dies(job, queue, workers, TASKS_PER_WORKER * workers))
        while suspects:
            for task in _run_until_a_worker_dies(job, suspects, 1, 1):
                fail(task, WorkerDied())


def _run_until_a_worker_dies(job: _Job[T, R], queue: deque[T], workers: int, limit: int) -> list[T]:
    """Run tasks from ``queue``, at most ``limit`` at a time, in a new pool; return the tasks
    that were in flight if a worker died (empty when the queue was finished)."""
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        in_flight: dict[Future, T] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    task = queue.popleft()
                    try:
                        in_flight[pool.submit(job.function, task)] = task
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
                        job.finish(future, task)
                if lost:
                    return lost + list(in_flight.values())
        except BaseException:  # Ctrl-C: drop what has not started, let running tasks finish
            pool.shutdown(wait=True, cancel_futures=True)
            for future in in_flight:
                if not future.cancelled() and future.exception() is None:
                    job.handle(future.result())  # so the caller records it
            raise
    return []


def _init_worker() -> None:
    """Leave Ctrl-C to the main process, and exit when the main process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)
