"""The publisher's settings refuse values it cannot run with (pure)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from contracts.settings import SettingsError, load_settings
from publisher.settings import PublisherSettings


def test_defaults_are_valid() -> None:
    settings = PublisherSettings()
    assert settings.source == "pub-1"
    assert settings.symbol_list == ("AAPL", "MSFT", "GOOG", "AMZN", "BRK.B")
    assert settings.rate == 2.0


def test_symbols_are_normalised_and_deduplicated_in_order() -> None:
    settings = PublisherSettings(symbols=" msft, brk.b,AAPL,MSFT,,rds-a ")
    assert settings.symbol_list == ("MSFT", "BRK.B", "AAPL", "RDS-A")
    assert settings.symbols == "MSFT,BRK.B,AAPL,RDS-A"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"symbols": "AAPL,BAD*"}, "invalid symbol 'BAD*'"),
        ({"symbols": "prices.>"}, "invalid symbol"),
        ({"symbols": "BRK_B"}, "invalid symbol 'BRK_B'"),
        ({"symbols": " , "}, "at least one symbol"),
        ({"rate": 0.0}, "--rate must be > 0"),
        ({"rate": -1.0}, "--rate must be > 0"),
        ({"rate": 10_001.0}, "<= 10000"),
        ({"source": ""}, "--source"),
        ({"source": "pub 1"}, "--source"),
        ({"source": "pub:1"}, "--source"),  # ':' separates source and counter in the id
        ({"source": "x" * 65}, "--source"),
        ({"publish_timeout": 0.0}, "--publish-timeout"),
        ({"publish_retries": -1}, "--publish-retries"),
        ({"connect_timeout": 0.0}, "--connect-timeout"),
        ({"publish_timeout": 30.0}, "--stream-duplicate-window"),
        ({"stream_duplicate_window": 5.0}, "--stream-duplicate-window"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(values: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        dataclasses.replace(PublisherSettings(), **values)


def test_retries_always_end_inside_the_duplicate_window() -> None:
    settings = PublisherSettings(publish_timeout=2.0, publish_retries=5)
    assert settings.retry_span() < settings.stream_duplicate_window
    # The last retry starts after every timeout but the last and every back-off.
    assert settings.retry_span() >= 6 * 2.0 + (0.1 + 0.2 + 0.4 + 0.8 + 1.6)


def test_flags_beat_variables_beat_defaults() -> None:
    settings = load_settings(
        PublisherSettings,
        ["--rate", "5", "--symbols", "goog"],
        {"PUBLISHER_RATE": "3", "PUBLISHER_SOURCE": "feed-a", "NATS_URL": "nats://n:4222"},
        prog="python -m publisher",
        env_prefix="PUBLISHER_",
    )
    assert settings.rate == 5.0
    assert settings.symbol_list == ("GOOG",)
    assert settings.source == "feed-a"
    assert settings.nats_url == "nats://n:4222"
