"""The OpenAPI description (gateway/http/openapi.yaml): valid, served, and true to the app."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jsonschema_rs
import schemathesis
import yaml
from nats.js import JetStreamContext
from starlette.routing import Mount, Route

import gateway
from contracts.event_ids import EventPosition, incarnation_of
from contracts.symbols import SYMBOL_PATTERN
from gateway.app import build_app
from gateway.http.openapi import OPENAPI_FILE, load_openapi
from gateway.settings import Settings
from tests.conftest import StartGateway

UNDOCUMENTED = {"/", "/static"}  # the page and its files are for browsers, not API clients


def test_the_description_is_valid_openapi_3_1() -> None:
    document = load_openapi()
    assert document["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises on the first error
    for component in document["components"]["schemas"].values():
        jsonschema_rs.meta.validate(component)  # each a valid JSON Schema 2020-12


def test_the_description_uses_the_contract_grammars() -> None:
    schemas = load_openapi()["components"]["schemas"]
    assert schemas["CanonicalSymbol"]["pattern"] == f"^{SYMBOL_PATTERN.pattern}$"
    event_id = jsonschema_rs.Draft202012Validator(schemas["EventId"])
    created = datetime(2026, 11, 25, 21, 18, 23, 766248, tzinfo=UTC)
    for sequence in (1, 42, 10**18):
        assert event_id.is_valid(str(EventPosition(incarnation_of(created), sequence)))
    for bad in ("", "abc", "abc-0", "ABC-1", "abc--1", "-1", "abc-1x"):
        assert not event_id.is_valid(bad), bad


def test_every_route_is_documented_and_every_documented_path_is_a_route() -> None:
    app = build_app(Settings())
    documented = load_openapi()["paths"]
    routes = {route.path: route for route in app.routes if isinstance(route, Route | Mount)}
    assert set(documented) == set(routes) - UNDOCUMENTED
    for path, operations in documented.items():
        route = routes[path]
        assert isinstance(route, Route)
        assert route.methods is not None
        assert {method.upper() for method in operations} <= route.methods, path


async def test_the_gateway_serves_its_description(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    running = await start_gateway()
    async with httpx.AsyncClient(base_url=running.url) as client:
        as_yaml = await client.get("/openapi.yaml")
        as_json = await client.get("/openapi.json")
    assert as_yaml.status_code == as_json.status_code == 200
    assert as_yaml.headers["content-type"] == "application/yaml"
    assert as_json.headers["content-type"] == "application/json"
    assert as_yaml.content == OPENAPI_FILE.read_bytes()
    assert yaml.safe_load(as_yaml.content) == json.loads(as_json.content) == load_openapi()
    served = schemathesis.openapi.from_dict(json.loads(as_json.content))
    served.validate()
    # An operation schemathesis could not load is an Err, without ok(): the test fails.
    results = served.get_all_operations()
    paths = {result.ok().path for result in results}  # type: ignore[union-attr]
    assert paths == set(load_openapi()["paths"])


def test_the_description_ships_with_the_package() -> None:
    # Served from the package directory, so an installed gateway needs it as package data.
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]["gateway"]
    assert OPENAPI_FILE.relative_to(Path(gateway.__file__).parent).as_posix() in package_data
