"""The gateway's OpenAPI description, served as it ships: `/openapi.yaml` and `/openapi.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

OPENAPI_FILE = Path(__file__).parent / "openapi.yaml"
# The description changes only with a release; a browser or tool may keep it briefly.
CACHE = {"Cache-Control": "max-age=60"}


def load_openapi() -> dict[str, Any]:
    """The description as a JSON-compatible dict."""
    document: dict[str, Any] = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    return document


def openapi_routes() -> list[BaseRoute]:
    """`GET /openapi.yaml` (the file as written) and `GET /openapi.json` (the same, as JSON)."""
    # Read and converted once, when the app is built: a broken file fails at start, not
    # on the first request.
    as_yaml = OPENAPI_FILE.read_bytes()
    as_json = json.dumps(load_openapi(), separators=(",", ":")).encode()

    async def openapi_yaml(request: Request) -> Response:
        return Response(as_yaml, media_type="application/yaml", headers=CACHE)

    async def openapi_json(request: Request) -> Response:
        return Response(as_json, media_type="application/json", headers=CACHE)

    return [Route("/openapi.yaml", openapi_yaml), Route("/openapi.json", openapi_json)]
