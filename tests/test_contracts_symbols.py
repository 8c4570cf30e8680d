"""Symbol grammar and the symbol <-> subject mapping (pure)."""

from __future__ import annotations

import re

import pytest

from contracts.errors import InvalidSymbolError
from contracts.symbols import normalize_symbol, subject_for, symbol_for


@pytest.mark.parametrize(
    ("raw", "symbol"),
    [
        ("AAPL", "AAPL"),
        ("aapl", "AAPL"),
        ("brk.b", "BRK.B"),
        ("RDS-A", "RDS-A"),
        ("7203", "7203"),
        ("A", "A"),
        ("ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),
    ],
)
def test_valid_symbols_normalise_to_upper_case(raw: str, symbol: str) -> None:
    assert normalize_symbol(raw) == symbol


@pytest.mark.parametrize(
    "raw",
    ["", "*", ">", "A*", "BRK_B", "AA PL", "ABCDEFGHIJKLMNOPQ", ".A", "-A", "A/B", "É", "A\n"],
)
def test_invalid_symbols_are_refused_naming_the_value(raw: str) -> None:
    with pytest.raises(InvalidSymbolError, match=re.escape(repr(raw))):
        normalize_symbol(raw)


@pytest.mark.parametrize(
    ("symbol", "subject"),
    [
        ("AAPL", "prices.AAPL"),
        ("BRK.B", "prices.BRK_B"),
        ("RDS-A", "prices.RDS-A"),
        ("A.B.C", "prices.A_B_C"),
    ],
)
def test_subject_mapping_goes_both_ways(symbol: str, subject: str) -> None:
    assert subject_for(symbol) == subject
    assert symbol_for(subject) == symbol


def test_subject_prefix_is_configurable() -> None:
    assert subject_for("BRK.B", "ticks") == "ticks.BRK_B"
    assert symbol_for("ticks.BRK_B", "ticks") == "BRK.B"


@pytest.mark.parametrize("subject", ["prices", "other.AAPL", "prices.A.B", "prices.*", "prices."])
def test_other_subjects_are_not_symbols(subject: str) -> None:
    with pytest.raises(InvalidSymbolError):
        symbol_for(subject)
