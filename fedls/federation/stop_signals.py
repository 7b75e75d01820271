"""How a run reacts to SIGINT and SIGTERM (see :class:`StopSignals`)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fedls.federation.server import RunInterrupted

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(RunInterrupted):
    """The run was stopped by a signal (SIGINT: Ctrl-C, SIGTERM: ``timeout``, a batch scheduler);
    the exit code a shell expects for it is ``128 + signum``."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """SIGINT and SIGTERM while a run is going.

    Ctrl-C (SIGINT): ask the server to stop after the round in progress (the ServerApp runs in
    a thread and Flower's runtime does not pass KeyboardInterrupt on). Ray's processes block
    SIGINT, so a terminal's Ctrl-C, which reaches the whole foreground process group, leaves
    them running and the round can finish.

    SIGTERM, or a second Ctrl-C: ``quit_now(signum)``, which writes the summary, stops Ray and
    leaves at once. A round in progress cannot be waited for after SIGTERM: ``timeout`` sends it
    to the whole process group and a batch scheduler to every process of the job, so Ray's
    GCS, raylet and workers end with it (seen: every client of the round failed, and the
    backend's shutdown then waited for a GCS that was gone), and the scheduler's SIGKILL
    follows within seconds.

    Only the main thread can own signal handlers; elsewhere (a caller's worker thread) nothing
    is installed and the caller's own handling stays as it is.
    """

    def __init__(self, stop: threading.Event, quit_now: Callable[[int], None]) -> None:
        self.stop = stop
        self.quit_now = quit_now
        self.signum: int | None = None  # the signal that stopped the run
        self._previous: dict[int, Any] = {}

    @property
    def active(self) -> bool:
        return threading.current_thread() is threading.main_thread()

    def install(self) -> None:
        """(Re)install the handlers; again after ``ray.init``, which replaces the SIGTERM handler
        of the driver with one that raises SystemExit wherever the main thread happens to be."""
        if not self.active:
            return
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self.handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def handle(self, signum: int, frame: object) -> None:
        first = self.signum is None
        self.signum = signum
        self.stop.set()
        if first and signum == signal.SIGINT:
            log.warning("interrupt: stopping after the current round (Ctrl-C again to quit at once)")
            return
        self.quit_now(signum)


@contextmanager
def stop_on_interrupt(stop: threading.Event, quit_now: Callable[[int], None] | None = None) -> Iterator[StopSignals]:
    """:class:`StopSignals` installed for the block; the previous handlers come back after it.
    Without ``quit_now`` a second signal leaves with ``os._exit(128 + signum)``."""
    signals = StopSignals(stop, quit_now or (lambda signum: os._exit(128 + signum)))
    signals.install()
    try:
        yield signals
    finally:
        signals.restore()
