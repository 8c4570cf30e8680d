"""`--workers N`: a supervisor process running N gateway workers on one port.

The supervisor binds nothing and serves nothing. It starts each worker (multiprocessing's
spawn: a fresh interpreter), turns SIGTERM and SIGINT into orders on each worker's pipe
(the first drains, a second ends at once), and waits for them all. A worker that dies
after it started is started again, with a new gateway id; one that cannot start stops
the others, and the supervisor exits with its status.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from gateway.process import raise_open_files_limit
from gateway.settings import PROG, Settings
from gateway.worker import STARTED, STOP, run_worker, worker_settings

logger = logging.getLogger(__name__)

# A slot starts its worker again no sooner than this after its previous start: a worker
# that keeps dying costs a start a second, not a spinning supervisor.
RESTART_DELAY = 1.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(slots=True)
class Slot:
    """Worker `index`: its current process, if any, and its history."""

    index: int
    restarts: int = 0
    process: BaseProcess | None = None
    channel: Connection | None = None
    listening: bool = False  # the channel is open (not yet at EOF)
    started: bool = False  # said STARTED: dying from now on means a restart
    started_at: float = 0.0
    due: float | None = None  # when to start it again


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.slots = [Slot(i) for i in range(settings.workers)]
        self.stops = 0  # stop orders given
        self.status = 0

    def run(self) -> int:
        with _signals_to_pipe() as wakeup:
            try:
                for slot in self.slots:
                    self._start(slot)
                while any(s.process is not None or s.due is not None for s in self.slots):
                    self._step(wakeup)
            finally:
                for slot in self.slots:  # only after an error of the supervisor's own
                    if slot.process is not None:
                        slot.process.kill()
                        slot.process.join()
        logger.info("workers stopped", extra={"status": self.status})
        return self.status

    def _start(self, slot: Slot) -> None:
        settings = worker_settings(self.settings, slot.index, slot.restarts)
        mine, theirs = self.context.Pipe()
        process = self.context.Process(
            target=run_worker, args=(settings, slot.index, theirs), name=f"worker-{slot.index}"
        )
        process.start()
        theirs.close()  # the worker's copy alone: its end reaches EOF when it dies
        slot.process, slot.channel, slot.listening = process, mine, True
        slot.started, slot.started_at, slot.due = False, time.monotonic(), None
        logger.info(
            "worker starting",
            extra={"worker": slot.index, "pid": process.pid, "gateway": settings.gateway_id},
        )

    def _step(self, wakeup: int) -> None:
        watched: list[Connection | int] = [wakeup]
        for slot in self.slots:
            if slot.process is not None:
                watched.append(slot.process.sentinel)
            if slot.channel is not None and slot.listening:
                watched.append(slot.channel)
        due = [s.due for s in self.slots if s.due is not None]
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        ready = wait(watched, timeout)
        if wakeup in ready:
            self._on_signals(os.read(wakeup, 64))
        for slot in self.slots:
            if slot.channel is not None and slot.channel in ready:
                self._on_message(slot)
            if slot.process is not None and slot.process.sentinel in ready:
                self._on_exit(slot)
            if slot.due is not None and slot.due <= time.monotonic():
                self._start(slot)

    def _on_signals(self, received: bytes) -> None:
        for _ in received:
            self.stop()

    def stop(self) -> None:
        """Order every worker to drain; called again, to end at once."""
        self.stops += 1
        at_once = self.stops > 1
        logger.info("stopping workers", extra={"at_once": at_once})
        for slot in self.slots:
            slot.due = None
            if slot.process is None or slot.channel is None:
                continue
            if at_once and not slot.started:
                slot.process.kill()  # not reading orders yet
            with contextlib.suppress(OSError):  # it died meanwhile: its exit says so
                slot.channel.send_bytes(STOP)

    def _on_message(self, slot: Slot) -> None:
        assert slot.channel is not None
        assert slot.process is not None
        try:
            message = slot.channel.recv_bytes()
        except (EOFError, OSError):
            slot.listening = False  # dying: the sentinel tells when it is gone
            return
        if message == STARTED:
            slot.started = True
            logger.info("worker started", extra={"worker": slot.index, "pid": slot.process.pid})

    def _on_exit(self, slot: Slot) -> None:
        assert slot.process is not None
        assert slot.channel is not None
        slot.process.join()
        code = slot.process.exitcode
        slot.channel.close()
        slot.process, slot.channel = None, None
        details = {"worker": slot.index, "exit_status": code}
        if self.stops:
            logger.info("worker stopped", extra=details)
            if code != 0 and not self.status:
                self.status = 1
        elif not slot.started:
            logger.error("worker failed to start: stopping the others", extra=details)
            self.status = code if code is not None and code > 0 else 1
            self.stop()
        else:
            slot.restarts += 1
            slot.due = max(time.monotonic(), slot.started_at + RESTART_DELAY)
            logger.error("worker died: starting it again", extra=details)


@contextlib.contextmanager
def _signals_to_pipe() -> Iterator[int]:
    """SIGTERM and SIGINT written as bytes to a pipe, whose reading end the supervisor
    waits on with its workers (a handler alone would not wake that wait)."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)

    def noted(signum: int, frame: FrameType | None) -> None:
        """The wake-up byte carries the signal; nothing to do here."""

    previous = {signum: signal.signal(signum, noted) for signum in SIGNALS}
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    try:
        yield read
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(read)
        os.close(write)


def supervise(settings: Settings) -> int:
    """Run `settings.workers` workers until stopped; the exit status."""
    # Checked here once, so that a limit too low is one line and status 2, as without
    # workers; the workers inherit the raised soft limit.
    if problem := raise_open_files_limit(settings.max_connections):
        sys.stderr.write(f"{PROG}: error: {problem}\n")
        return 2
    logger.info(
        "gateway starting workers",
        extra={"workers": settings.workers, "port": settings.port, "gateway": settings.gateway_id},
    )
    return Supervisor(settings).run()
