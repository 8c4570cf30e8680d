"""Errors raised when a value breaks the shared contract.

    ContractError
    ├── InvalidSymbolError     a symbol outside the grammar
    │   └── TooManySymbolsError    a list of symbols longer than its limit
    ├── InvalidTickError       a price message that is not a valid tick
    ├── InvalidEventIdError    a Last-Event-ID that is not one of ours
    └── StreamConfigError      the stream exists with a config that cannot be reconciled

Each message names the offending value, so the edges can show it as it is.
"""

from __future__ import annotations


class ContractError(ValueError):
    """A value does not follow the shared contract."""


class InvalidSymbolError(ContractError):
    pass


class TooManySymbolsError(InvalidSymbolError):
    pass


class InvalidTickError(ContractError):
    pass


class InvalidEventIdError(ContractError):
    pass


class StreamConfigError(ContractError):
    pass
