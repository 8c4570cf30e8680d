"""A deliberate leak, for the soak's detector to catch in a real gateway: imported at
start-up by a process that has this directory on its PYTHONPATH, it keeps a descriptor
and 256 KiB of touched memory every 0.1 s, from a thread of its own."""

from __future__ import annotations

import os
import threading
import time

_kept: list[object] = []


def _leak() -> None:
    while True:
        _kept.append(os.open(os.devnull, os.O_RDONLY))
        _kept.append(b"x" * 256 * 1024)
        time.sleep(0.1)


threading.Thread(target=_leak, name="leak", daemon=True).start()
