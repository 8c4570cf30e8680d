"""The RFC 9457 problem documents the gateway answers with, as tests check them."""

from __future__ import annotations

from typing import Any

import httpx


def assert_problem(response: httpx.Response, status: int, *named: str) -> dict[str, Any]:
    """An RFC 9457 problem of `status` whose detail names each of `named`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    for text in named:
        assert text in body["detail"], body["detail"]
    return body
