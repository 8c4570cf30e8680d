"""Imported at start-up by the server under test (the benchmark puts this directory on its
PYTHONPATH): reports every garbage collection of 5 ms or more on stderr, because a
collection stops the event loop and shows up as latency."""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

THRESHOLD = 0.005
_started = [0.0]


def _report(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    pause = time.perf_counter() - _started[0]
    if pause >= THRESHOLD:
        sys.stderr.write(f"bench-gc-pause gen={info['generation']} ms={pause * 1000:.1f}\n")


gc.callbacks.append(_report)
