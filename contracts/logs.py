"""Logging set-up for both commands: one JSON object a line on stderr."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

from pythonjsonlogger.json import JsonFormatter


def configure_logging(level: str, fields: Mapping[str, object] | None = None) -> None:
    """JSON lines at `level`, each with `fields` too (e.g. which worker wrote it); only a
    command's `main` calls this."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields=dict(fields or {}),
        )
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # nats-py logs every reconnect attempt at ERROR; our callbacks say it once.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
