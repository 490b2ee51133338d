"""Ctrl-C and SIGTERM as ``Stopped``, a ``KeyboardInterrupt``, so both stop runs as Ctrl-C does."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; the message names it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


def stopped_message(signum: int, detail: str = "") -> str:
    """The last line a stopped command prints; ``detail``: what the command says it kept."""
    how = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
    if detail:
        return f"stopped by {how}: {detail}"
    return (
        f"stopped by {how}; what was already written is complete, partial files were removed"
        " (run the command again to resume where it can)"
    )


class StopSignals:
    """Context manager: the first SIGINT/SIGTERM raises ``Stopped`` and repeats are ignored (a
    second Ctrl-C cannot cut the clean-up short); a no-op outside the main thread."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.pending = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            stops = (signal.SIGINT, signal.SIGTERM)
            self._previous = {signum: signal.signal(signum, self._handle) for signum in stops}
            _ACTIVE.append(self)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is None:  # a repeat lets the clean-up of the first one finish
            self.received = signum
            self.pending = bool(_HELD_BACK)
            if not self.pending:
                raise Stopped(signum)

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self in _ACTIVE:
            _ACTIVE.remove(self)


_ACTIVE: list[StopSignals] = []
_HELD_BACK: list[bool] = []


@contextlib.contextmanager
def not_interrupted() -> Iterator[None]:
    """Hold a stop signal back until the block ends (``Stopped`` raised in ``torch.save``'s Python
    callbacks would become torch's own error)."""
    _HELD_BACK.append(True)
    try:
        yield
    finally:
        _HELD_BACK.pop()
    if _ACTIVE and _ACTIVE[-1].pending and not _HELD_BACK:
        _ACTIVE[-1].pending = False
        raise Stopped(_ACTIVE[-1].received or signal.SIGINT)
