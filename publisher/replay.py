"""Recorded ticks from a file (CSV or NDJSON), published at their recorded pace.

A row is one tick: `symbol`, `price` and `timestamp` (RFC 3339 UTC, or epoch seconds),
and any other fields, which are kept and forwarded like a live tick's extra fields. The
whole file is checked before anything is published; a bad row is a ReplayFileError that
names the file and line. Each tick is published through the normal publisher's
`TickPublisher.publish_once`: the same `<source>:<counter>` Nats-Msg-Id and retries under
it, the tick's `source` is the replaying publisher's, and it is stamped when published,
so the system behaves as if the recording were live.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import simplejson

from contracts.errors import InvalidTickError
from contracts.messages import PriceTick
from publisher.errors import ReplayFileError
from publisher.ticker import TickPublisher
from publisher.ticks import utc_now

logger = logging.getLogger(__name__)

REQUIRED = ("symbol", "price", "timestamp")
NDJSON_SUFFIXES = {".ndjson", ".jsonl", ".json"}
# A timestamp cell or field that is a plain number: epoch seconds.
_EPOCH = re.compile(r"-?\d+(\.\d+)?")
# Seconds behind its due time after which a tick counts as late (acks slower than the pace).
LATE = 1.0


@dataclass(frozen=True, slots=True)
class RecordedTick:
    line: int
    recorded_at: float  # epoch seconds, from the row's timestamp
    tick: PriceTick  # as recorded, with the replaying publisher's source


def is_ndjson(path: Path) -> bool:
    """NDJSON by suffix; otherwise by content: a first non-blank character `{`."""
    if path.suffix.lower() in NDJSON_SUFFIXES:
        return True
    if path.suffix.lower() == ".csv":
        return False
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def read_ticks(path: Path, source: str) -> Iterator[RecordedTick]:
    """The file's ticks in file order; raises ReplayFileError at the first bad row."""
    try:
        if is_ndjson(path):
            yield from _ndjson_ticks(path, source)
        else:
            yield from _csv_ticks(path, source)
    except UnicodeDecodeError as exc:
        raise ReplayFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ReplayFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def check_file(path: Path, source: str) -> int:
    """Read the whole file once; return how many ticks it holds (at least one)."""
    count = sum(1 for _ in read_ticks(path, source))
    if count == 0:
        raise ReplayFileError(f"{path}: no ticks in the file")
    return count


def _ndjson_ticks(path: Path, source: str) -> Iterator[RecordedTick]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = simplejson.loads(line, use_decimal=True)
            except (ValueError, RecursionError) as exc:
                raise ReplayFileError(f"{path}:{number}: not JSON: {str(exc)[:200]}") from None
            if not isinstance(row, dict):
                raise ReplayFileError(
                    f"{path}:{number}: a tick must be a JSON object, got {type(row).__name__}"
                )
            yield _recorded(path, number, row, source)


def _csv_ticks(path: Path, source: str) -> Iterator[RecordedTick]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, strict=True)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ReplayFileError(
                f"{path}:1: the CSV header needs the columns {', '.join(REQUIRED)}; "
                f"missing {', '.join(missing)} (header: {','.join(header) or 'none'})"
            )
        reader.fieldnames = header
        try:
            for row in reader:
                # reader.line_num is the physical line the row ended on.
                number = reader.line_num
                if None in row:
                    raise ReplayFileError(
                        f"{path}:{number}: {len(header) + len(row[None])} fields, "
                        f"the header has {len(header)}"
                    )
                values = {k: v.strip() for k, v in row.items() if v is not None}
                if not any(values.values()):
                    continue  # a blank line
                yield _recorded(path, number, _from_csv(path, number, values), source)
        except csv.Error as exc:
            raise ReplayFileError(f"{path}:{reader.line_num}: bad CSV: {exc}") from None


def _from_csv(path: Path, number: int, row: dict[str, str]) -> dict[str, Any]:
    price = row["price"]
    try:
        value = Decimal(price)
    except InvalidOperation:
        raise ReplayFileError(f"{path}:{number}: price {price!r} is not a number") from None
    # Extra columns go along as strings; an empty cell is no field.
    extras = {k: v for k, v in row.items() if k not in REQUIRED and v != ""}
    return {**extras, "symbol": row["symbol"], "price": value, "timestamp": row["timestamp"]}


def _recorded(path: Path, number: int, row: dict[str, Any], source: str) -> RecordedTick:
    for name in REQUIRED:
        if name not in row:
            raise ReplayFileError(f"{path}:{number}: no {name!r} field")
    recorded = row["timestamp"]
    if isinstance(recorded, str) and _EPOCH.fullmatch(recorded.strip()):
        recorded = Decimal(recorded)
    if isinstance(recorded, int | float | Decimal) and not isinstance(recorded, bool):
        try:
            recorded = datetime.fromtimestamp(float(recorded), UTC)
        except (OverflowError, OSError, ValueError):
            raise ReplayFileError(
                f"{path}:{number}: timestamp {recorded} is no epoch time in seconds"
            ) from None
    # The replaying publisher is the tick's source, as its Nats-Msg-Id says.
    fields = {**row, "timestamp": recorded, "source": source}
    try:
        tick = PriceTick.validate_object(fields)
    except InvalidTickError as exc:
        raise ReplayFileError(f"{path}:{number}: {exc}") from None
    return RecordedTick(number, tick.timestamp.timestamp(), tick)


class Pace:
    """When each tick is due, in seconds after the start: its recorded offset from the
    first tick divided by `speed` (0: at once). A tick recorded before the one above it
    is due with that one, never earlier: rows keep their file order."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._first: float | None = None
        self._latest = 0.0

    def due(self, recorded_at: float) -> float:
        if self._first is None:
            self._first = recorded_at
        if self.speed:
            self._latest = max(self._latest, (recorded_at - self._first) / self.speed)
        return self._latest


@dataclass(slots=True)
class ReplayStats:
    ticks: int = 0  # rows handed to the publisher
    late: int = 0  # started more than LATE seconds after their due time


class Replayer:
    """Publishes a file's ticks through a TickPublisher at the recorded pace."""

    def __init__(self, path: Path, source: str, publisher: TickPublisher, speed: float) -> None:
        self.path = path
        self.source = source
        self.publisher = publisher
        self.speed = speed
        self.stats = ReplayStats()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run` to return after the tick in flight."""
        self._stopping.set()

    async def run(self) -> None:
        """Publish every tick of the file in order; return at its end or after stop()."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        pace = Pace(self.speed)
        for row in read_ticks(self.path, self.source):
            due = start + pace.due(row.recorded_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            if loop.time() - due > LATE:
                self.stats.late += 1
            # Stamped now, like a live tick: the page and the lag metric see a live feed.
            await self.publisher.publish_once(row.tick.model_copy(update={"timestamp": utc_now()}))
            self.stats.ticks += 1
