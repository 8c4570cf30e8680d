"""A Python client for the price gateway: `async for tick in PriceStream(url, symbols)`.

Resumes exactly after the last event id across reconnects, backs off on failures and
honours the gateway's Retry-After. Needs httpx (`pip install 'price-gateway[client]'`);
imports nothing of the gateway or the publisher.
"""

from __future__ import annotations

from price_client.backoff import Backoff
from price_client.errors import GaveUpError, PriceClientError, RequestRejectedError
from price_client.stream import Attempt, PriceStream, Reset, Tick

__all__ = [
    "Attempt",
    "Backoff",
    "GaveUpError",
    "PriceClientError",
    "PriceStream",
    "RequestRejectedError",
    "Reset",
    "Tick",
]
