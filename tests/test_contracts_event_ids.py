"""Event ids: `<incarnation>-<sequence>` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.errors import InvalidEventIdError
from contracts.event_ids import EventPosition, incarnation_of, parse_event_id


def test_id_round_trips() -> None:
    incarnation = incarnation_of(datetime(2026, 11, 25, 21, 18, 23, 766248, tzinfo=UTC))
    position = EventPosition(incarnation, 42)
    assert parse_event_id(str(position)) == position


def test_streams_created_a_microsecond_apart_have_different_incarnations() -> None:
    a = datetime(2026, 11, 25, 21, 18, 23, 766248, tzinfo=UTC)
    b = datetime(2026, 11, 25, 21, 18, 23, 766249, tzinfo=UTC)
    assert incarnation_of(a) != incarnation_of(b)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "42",
        "-5",
        "abc-",
        "abc--5",
        "abc-0",
        "abc-1.5",
        "ABC-1",
        "abc-1-2",
        "a b-1",
        "abc-١٢",
        "x" * 70 + "-1",
    ],
)
def test_malformed_ids_are_refused_naming_the_value(raw: str) -> None:
    with pytest.raises(InvalidEventIdError, match="invalid event id"):
        parse_event_id(raw)
