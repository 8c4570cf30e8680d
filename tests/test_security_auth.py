"""JWT authentication and per-symbol authorization of /stocks and /symbols, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from nats.js import JetStreamContext

from gateway.auth.keys import KeyConfigError
from gateway.auth.tokens import Authenticator
from gateway.settings import Settings
from tests.conftest import RunningGateway, StartGateway
from tests.problems import assert_problem
from tests.processes import run_command
from tests.sse_client import open_stream
from tests.ticks import client_consumers, event_id, publish
from tests.tokens import (
    AUTH,
    SECRET,
    bearer,
    claims,
    ec_key,
    mint,
    rsa_key,
    write_jwks,
    write_public_pem,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def secured(start_gateway: StartGateway, js: JetStreamContext) -> RunningGateway:
    return await start_gateway(**AUTH)


async def get(
    gateway: RunningGateway,
    path: str = "/stocks",
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> httpx.Response:
    async with (
        httpx.AsyncClient(base_url=gateway.url, cookies=cookies) as client,
        client.stream("GET", path, params=params, headers=headers) as response,
    ):
        if response.headers["content-type"] != "text/event-stream":
            await response.aread()
        return response


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    """A token with `alg: none` and no signature, as an attacker would forge it."""
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(payload)}."


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand (PyJWT refuses a PEM key as an HMAC secret, a verifier may not)."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(signature)}"


async def test_without_a_token_stocks_and_symbols_are_401_but_health_and_page_are_open(
    secured: RunningGateway,
) -> None:
    for path in ("/stocks", "/symbols"):
        response = await get(secured, path)
        assert_problem(response, 401, "token is required")
        # No token presented: the challenge alone (RFC 6750 section 3).
        assert response.headers["www-authenticate"] == 'Bearer realm="prices"'
    for path in ("/", "/healthz", "/readyz"):
        assert (await get(secured, path)).status_code == 200
    metrics = (await get(secured, "/metrics")).text
    assert 'gateway_errors_total{kind="unauthorized"} 2.0' in metrics


# Made when the test runs, not when the module is collected: a token minted at import
# expires while a long suite runs, and every case would then read "expired".
@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: mint() + "x", "Signature verification failed"),
        (lambda: mint(iss="https://evil.example/"), "Invalid issuer"),
        (lambda: mint(aud="another-service"), "Audience doesn't match"),
        (lambda: mint(expires_in=-120), "Signature has expired"),
        (lambda: mint(nbf=time.time() + 600), "not yet valid"),
        (lambda: mint(key="another-secret-that-is-also-32-bytes-long"), "Signature verification"),
        (
            lambda: jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET),
            '"exp"',
        ),
        (lambda: unsigned(claims()), "alg"),
        (lambda: "not.a.jwt", "invalid token"),
        (lambda: mint(symbols=42), "symbols claim"),
        (lambda: mint(symbols=["AAPL", "A*B*"]), "cannot match"),
    ],
    ids=[
        "tampered-signature",
        "wrong-issuer",
        "wrong-audience",
        "expired",
        "not-yet-valid",
        "other-secret",
        "no-exp",
        "alg-none",
        "garbage",
        "symbols-not-a-list",
        "bad-pattern",
    ],
)
async def test_a_token_that_does_not_verify_is_401_saying_why(
    secured: RunningGateway, make_token: Callable[[], str], reason: str
) -> None:
    token = make_token()
    for headers, cookies in ((bearer(token), None), (None, {"price_token": token})):
        response = await get(secured, params={"symbols": "AAPL"}, headers=headers, cookies=cookies)
        assert_problem(response, 401, reason)
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="prices", error="invalid_token"'), challenge


async def test_a_malformed_authorization_header_is_401(secured: RunningGateway) -> None:
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Token abc", mint()):
        response = await get(secured, headers={"Authorization": value})
        assert_problem(response, 401, "Bearer <token>")


async def test_a_token_in_the_query_string_is_refused(secured: RunningGateway) -> None:
    for name in ("access_token", "token"):
        response = await get(secured, params={name: mint()}, headers=bearer(mint()))
        assert_problem(response, 400, repr(name), "query string")


async def test_bearer_and_cookie_both_stream_the_granted_symbols(
    secured: RunningGateway, js: JetStreamContext
) -> None:
    await publish(js, "AAPL", "1.5")
    token = mint(["AAPL"])
    for headers, cookies in ((bearer(token), None), (None, {"price_token": token})):
        async with (
            httpx.AsyncClient(base_url=secured.url, cookies=cookies) as client,
            client.stream("GET", "/stocks?symbols=aapl", headers=headers) as response,
        ):
            assert response.status_code == 200
            async for chunk in response.aiter_text():
                if '"symbol":"AAPL"' in chunk:
                    break


async def test_a_symbol_the_token_does_not_grant_is_403_naming_it(
    secured: RunningGateway, js: JetStreamContext
) -> None:
    token = mint(["AAPL", "BRK.*"])
    response = await get(secured, params={"symbols": "AAPL,MSFT,BRK.B,GOOG"}, headers=bearer(token))
    body = assert_problem(response, 403, "'MSFT'", "'GOOG'")
    assert "BRK.B" not in body["detail"]  # granted by the pattern
    assert body["symbols"] == ["MSFT", "GOOG"]  # machine-readable, in request order
    assert not await client_consumers(js)  # refused before any consumer was made


async def test_all_symbols_means_all_the_token_allows(
    secured: RunningGateway, js: JetStreamContext
) -> None:
    for symbol in ("AAPL", "BRK.A", "BRK.B", "MSFT"):
        await publish(js, symbol)
    async with open_stream(secured.url, headers=bearer(mint("AAPL BRK.*"))) as stream:
        first = await stream.events(3)
        assert sorted(e.json()["symbol"] for e in first) == ["AAPL", "BRK.A", "BRK.B"]
        await publish(js, "MSFT")
        await publish(js, "BRK.B", "2.5")
        tick = (await stream.next_event()).json()  # MSFT, not granted, was skipped
        assert (tick["symbol"], tick["price"]) == ("BRK.B", 2.5)
    async with open_stream(secured.url, headers=bearer(mint("*"))) as stream:
        everything = await stream.events(4)
        assert sorted(e.json()["symbol"] for e in everything) == ["AAPL", "BRK.A", "BRK.B", "MSFT"]


async def test_a_grant_with_nothing_stored_yet_is_403(secured: RunningGateway) -> None:
    response = await get(secured, headers=bearer(mint(["NEW.*"])))
    assert_problem(response, 403, "NEW.*")


async def test_symbols_lists_what_the_token_allows(
    secured: RunningGateway, js: JetStreamContext
) -> None:
    for symbol in ("AAPL", "BRK.B", "MSFT"):
        await publish(js, symbol)
    response = await get(secured, "/symbols", headers=bearer(mint(["msft", "BRK.*"])))
    assert response.json() == ["BRK.B", "MSFT"]


async def test_the_stream_ends_when_the_token_expires_and_resumes_with_a_new_one(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(**AUTH, auth_leeway=0.0)
    first = await publish(js, "AAPL", "1.0")
    short = mint(["AAPL"], expires_in=2.0)
    async with open_stream(gateway.url, {"symbols": "AAPL"}, bearer(short)) as stream:
        assert (await stream.next_event()).id == await event_id(js, first)
        missed = await publish(js, "AAPL", "2.0")
        assert (await stream.next_event()).id == await event_id(js, missed)
        while (block := await stream.next_block(timeout=10)) is not None:
            last_comments = block.comments
        assert last_comments == ["stream ended: token expired; reconnect to resume"]
        assert stream.cut is None  # a clean end of the body: the browser reconnects
    during = await publish(js, "AAPL", "3.0")  # while the client renews its token
    headers = bearer(mint(["AAPL"])) | {"Last-Event-ID": await event_id(js, missed)}
    async with open_stream(gateway.url, {"symbols": "AAPL"}, headers) as stream:
        assert (await stream.next_event()).id == await event_id(js, during)
    metrics = (await get(gateway, "/metrics")).text
    assert 'gateway_streams_ended_total{reason="token expired"} 1.0' in metrics


async def test_leeway_bounds_the_clock_skew_accepted(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    lenient = await start_gateway(**AUTH, auth_leeway=60.0)
    strict = await start_gateway(**AUTH, auth_leeway=0.0)
    await publish(js, "AAPL")
    token = mint(["AAPL"], expires_in=-10)
    params = {"symbols": "AAPL"}
    assert (await get(lenient, params=params, headers=bearer(token))).status_code == 200
    assert_problem(await get(strict, params=params, headers=bearer(token)), 401)


async def test_rs256_public_key(
    start_gateway: StartGateway, js: JetStreamContext, tmp_path: Path
) -> None:
    key = rsa_key()
    pem = write_public_pem(key, tmp_path / "public.pem")
    gateway = await start_gateway(**(AUTH | {"auth_jwt_secret": ""}), auth_public_key_file=str(pem))
    await publish(js, "AAPL")
    good = mint(["AAPL"], key=key, algorithm="RS256")
    assert (await get(gateway, params={"symbols": "AAPL"}, headers=bearer(good))).status_code == 200
    # Algorithm confusion: HS256 "signed" with the public key as the secret.
    forged = forge_hs256(claims(["AAPL"]), pem.read_bytes())
    assert_problem(await get(gateway, params={"symbols": "AAPL"}, headers=bearer(forged)), 401)
    other = mint(["AAPL"], key=rsa_key(), algorithm="RS256")
    assert_problem(await get(gateway, params={"symbols": "AAPL"}, headers=bearer(other)), 401)


async def test_jwks_file_picks_the_key_by_kid_and_follows_rotation(
    start_gateway: StartGateway, js: JetStreamContext, tmp_path: Path
) -> None:
    old, new = ec_key(), rsa_key()
    jwks = write_jwks({"2026-a": old}, tmp_path / "jwks.json")
    gateway = await start_gateway(**(AUTH | {"auth_jwt_secret": ""}), auth_jwks_file=str(jwks))
    await publish(js, "AAPL")
    params = {"symbols": "AAPL"}

    async def status(key: Any, kid: str, algorithm: str) -> int:
        token = mint(["AAPL"], key=key, algorithm=algorithm, kid=kid)
        return (await get(gateway, params=params, headers=bearer(token))).status_code

    assert await status(old, "2026-a", "ES256") == 200
    assert await status(new, "2026-b", "RS256") == 401  # not published yet
    assert await status(new, "2026-a", "RS256") == 401  # a kid is bound to its key
    write_jwks({"2026-a": old, "2026-b": new}, jwks)
    assert await status(new, "2026-b", "RS256") == 200  # rotated in, no restart
    assert await status(old, "2026-a", "ES256") == 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth_jwt_secret": "short"}, "at least 32 bytes"),
        ({"auth_jwt_secret": SECRET}, "--auth-issuer and --auth-audience are required"),
        (AUTH | {"auth_jwks_file": "/x"}, "give one of"),
        (AUTH | {"auth_leeway": 3600.0}, "--auth-leeway"),
        (AUTH | {"auth_cookie": "a b"}, "--auth-cookie"),
    ],
)
def test_auth_settings_are_checked(overrides: dict[str, Any], message: str) -> None:
    from contracts.settings import SettingsError

    with pytest.raises(SettingsError, match=message):
        Settings(**overrides)


async def test_an_unusable_key_file_exits_2_with_one_line(tmp_path: Path) -> None:
    pem = tmp_path / "weak.pem"
    pem.write_bytes(b"not a key")
    args = ["--auth-public-key-file", str(pem), "--auth-issuer", "i", "--auth-audience", "a"]
    status, _, err = await run_command("-m", "gateway", *args)
    assert status == 2
    assert err.strip().count("\n") == 0
    assert f"--auth-public-key-file {pem}" in err


@pytest.mark.parametrize("setting", ["auth_public_key_file", "auth_jwks_file"])
def test_key_files_are_read_by_the_authenticator_not_by_the_settings(
    tmp_path: Path, setting: str
) -> None:
    bad = tmp_path / "bad-key"
    bad.write_bytes(b"not a key")
    keys: dict[str, Any] = {"auth_jwt_secret": "", setting: str(bad)}
    settings = Settings(**(AUTH | keys))  # reads no file
    with pytest.raises(KeyConfigError, match=f"--{setting.replace('_', '-')} {bad}"):
        Authenticator.from_settings(settings)


async def test_the_secret_is_never_printed_by_help() -> None:
    status, out, _ = await run_command(
        "-m", "gateway", "--help", env={"GATEWAY_AUTH_JWT_SECRET": SECRET}
    )
    assert status == 0
    assert "--auth-jwt-secret" in out
    assert SECRET not in out
