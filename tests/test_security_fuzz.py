"""Schema-driven fuzz of the gateway's HTTP surface, over real HTTP against real gateways.

schemathesis generates requests from `gateway/http/openapi.yaml`, valid ones (positive) and ones
that break the description (negative). Each generated case is sent four ways:

    as-is       to a gateway without authentication, exactly as generated
    headers     the same, with fuzzed Last-Event-ID, Authorization, cookies and extra headers
    token       to a gateway with JWT authentication, with a valid token (all symbols or a few)
    garbage     to that gateway with missing, malformed, forged or expired credentials

Every answer must be: no 5xx, every error an RFC 9457 problem document whose status matches,
no stack trace, a 200 /stocks an event stream. Its status must also be the one an
independent model of the contract predicts from the request as it went on the wire (symbol
grammar, event id grammar, the header beating the query, the stream's last sequence, the
header limit, the token's grant). The as-is and token answers also go through schemathesis'
conformance checks (documented status, content type, headers, body and SSE event schemas).

Generating a case costs far more than sending it (5-40 ms against 1-3 ms), so the four
sends per case are what make 10,000 requests fit in a CI minute.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from contracts.symbols import SYMBOL_PATTERN
from gateway.http.openapi import OPENAPI_FILE, load_openapi
from tests.aftermath import assert_unharmed
from tests.conftest import StartGateway
from tests.ticks import event_id, publish
from tests.tokens import AUTH, mint

pytestmark = pytest.mark.timeout(240)

# schemathesis' four type parameters of an operation tell nothing here.
GeneratedCase = Case[Any]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CASES = 2_600
MIN_REQUESTS = 10_000
SYMBOLS = ["AAPL", "MSFT", "GOOG", "BRK.B", "RDS-A", "0", "A", "9Z"]
PROTECTED = {"/stocks", "/symbols"}
STACK_TRACE = re.compile(rb'Traceback \(most recent call last\)|File "[^"]+", line \d+')
# The documented grammar (openapi.yaml), not the parser's code.
EVENT_ID = re.compile(load_openapi()["components"]["schemas"]["EventId"]["pattern"])
EVENT_ID_MAX_LENGTH = 64
# Query parameters the gateway refuses, so that tokens do not end up in access logs.
TOKEN_PARAMETERS = {"access_token", "token", "jwt", "id_token"}
# Operations and how often each is drawn: /stocks carries nearly all the input there is.
MIX = [("/stocks", GenerationMode.POSITIVE)] * 9 + [("/stocks", GenerationMode.NEGATIVE)] * 6
MIX += [(path, GenerationMode.POSITIVE) for path in ("/symbols", "/healthz", "/readyz")]
MIX += [(path, GenerationMode.POSITIVE) for path in ("/metrics", "/page-config")]
MIX += [(path, GenerationMode.POSITIVE) for path in ("/openapi.yaml", "/openapi.json")]
# Not negative_data_rejection: it judges what was generated, and a negated value can vanish
# or turn valid on the wire (a None parameter is dropped; `false` is the symbol FALSE).
# expected_status() judges what was sent instead.
SCHEMATHESIS_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# What h11 (httpx) lets through in a header value: no NUL, CR, LF or edge whitespace. The
# raw-socket fuzz (test_security_http_raw.py) sends what it refuses.
_VALUE_BYTES = st.sampled_from([bytes([b]) for b in range(0x21, 0x100) if b != 0x7F])
header_values = st.lists(
    st.one_of(_VALUE_BYTES, _VALUE_BYTES, st.just(b" "), st.just(b"\t")), max_size=60
).map(lambda parts: b"".join(parts).strip(b" \t") or b"x")
# Headers that frame the message, or that the fuzz sets on purpose, are not drawn at random.
_RESERVED = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"}
_RESERVED |= {"te", "trailer", "cookie", "authorization", "last-event-id"}
header_names = st.from_regex(r"\A[-!#$%&'*+.^_`|~0-9a-zA-Z]{1,24}\Z").filter(
    lambda name: name.lower() not in _RESERVED
)


@dataclass(frozen=True, slots=True)
class Target:
    """What the fuzz knows about the running system."""

    open_url: str
    auth_url: str
    incarnation: str
    last_sequence: int
    max_symbols: int
    max_header_bytes: int


@dataclass
class Tally:
    requests: int = 0
    cases: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    by_send: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def report(self) -> str:
        seconds = time.monotonic() - self.started
        lines = [f"{self.requests} requests from {self.cases} cases in {seconds:.1f} s"]
        lines += [f"  {key}: {count}" for key, count in sorted(self.statuses.items())]
        lines += [f"  send {key}: {count}" for key, count in sorted(self.by_send.items())]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response as far as it was read: all of it, or a stream's head and first chunk."""

    response: httpx.Response
    body: bytes
    seconds: float

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        return str(self.response.headers.get("content-type", ""))

    def for_schemathesis(self) -> schemathesis.Response:
        request = self.response.request
        prepared = requests.Request(
            request.method, str(request.url), headers=dict(request.headers)
        ).prepare()
        headers = self.response.headers
        return schemathesis.Response(
            status_code=self.status,
            headers={name: headers.get_list(name) for name in headers},
            content=self.body,
            request=prepared,
            elapsed=self.seconds,
            verify=True,
            message=self.response.reason_phrase,
            http_version=self.response.http_version.removeprefix("HTTP/"),
            encoding=self.response.charset_encoding,
            stream_cut_short=self.content_type.startswith("text/event-stream"),
        )


def send(client: httpx.Client, wire: Mapping[str, Any]) -> Answer:
    """One request; an event stream is read to its first chunk, then closed (it never ends)."""
    headers = httpx.Headers(wire["headers"])
    if wire.get("cookies"):
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in wire["cookies"].items())
    started = time.monotonic()
    with client.stream(
        wire["method"], wire["url"], params=wire.get("params"), headers=headers
    ) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            body = next(response.iter_bytes(), b"")  # decoded: httpx asks for gzip
        else:
            body = response.read()
    return Answer(response, body, time.monotonic() - started)


def describe(kind: str, answer: Answer) -> str:
    """The request as sent and the answer's head, for a failure report."""
    request = answer.response.request
    headers = "\n".join(f"  {k.decode()}: {v!r}" for k, v in request.headers.raw)
    return (
        f"send {kind}: {request.method} {request.url}\n{headers}\n"
        f"-> {answer.status} {answer.content_type} {answer.body[:300]!r}"
    )


def check_answer(path: str, answer: Answer) -> None:
    """What every answer of the gateway must be, whatever was asked."""
    assert STACK_TRACE.search(answer.body) is None, answer.body[:2000]
    if answer.status >= 500:
        # Only "try again later" is allowed, and only in its documented form.
        assert answer.status == 503, answer.body[:2000]
        assert "retry-after" in answer.response.headers
    if answer.status >= 400:
        assert answer.content_type == "application/problem+json", (answer.status, answer.body)
        problem = json.loads(answer.body)
        assert isinstance(problem, dict), problem
        assert {"type", "title", "status", "detail"} <= problem.keys(), problem
        assert problem["status"] == answer.status, problem
        assert all(isinstance(problem[k], str) and problem[k] for k in ("type", "title", "detail"))
    if path == "/stocks" and answer.status == 200:
        assert answer.content_type == "text/event-stream", answer.content_type
        assert answer.response.headers.get("cache-control") == "no-cache"
        assert answer.body.startswith(b"retry: "), answer.body[:200]


Grant = Callable[[str], bool]


def expected_status(path: str, request: httpx.Request, target: Target, grant: Grant) -> set[int]:
    """The statuses the contract allows for `request` as it went on the wire, from a model
    that shares no code with the gateway. `grant` says which symbols the token allows."""
    status = _status_by_contract(path, request, target, grant)
    head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n\r\n".encode()
    size = len(head) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    # Past the header limit: 431, or what the gateway would answer otherwise when the
    # request came in more than one read (a known bug: test_security_http_raw.py).
    return {431, status} if size > target.max_header_bytes else {status}


def _query(request: httpx.Request) -> list[tuple[str, str]]:
    """Decoded as Starlette does: latin-1 bytes, then percent-decoding as UTF-8."""
    return parse_qsl(request.url.query.decode("latin-1"), keep_blank_values=True)


def token_in_query(request: httpx.Request) -> bool:
    return bool(TOKEN_PARAMETERS & {name.lower() for name, _ in _query(request)})  # any case


def _status_by_contract(path: str, request: httpx.Request, target: Target, grant: Grant) -> int:
    if path != "/stocks":
        return 200
    query = _query(request)
    if token_in_query(request):
        return 400
    pieces = [p.strip().upper() for k, v in query if k == "symbols" for p in v.split(",")]
    if len(set(pieces)) > target.max_symbols or not all(map(SYMBOL_PATTERN.fullmatch, pieces)):
        return 400
    header = next((v for k, v in request.headers.raw if k.lower() == b"last-event-id"), b"")
    ids = [v for k, v in query if k == "lastEventId"]
    raw_id = header.decode("latin-1") or (ids[-1] if ids else "")  # the header wins
    if raw_id:
        if len(raw_id) > EVENT_ID_MAX_LENGTH or not EVENT_ID.fullmatch(raw_id.strip()):
            return 400
        incarnation, _, sequence = raw_id.strip().partition("-")
        if incarnation == target.incarnation and int(sequence) > target.last_sequence:
            return 400  # a position the stream has not reached
    if pieces and not all(map(grant, pieces)):
        return 403
    return 200


def everything(symbol: str) -> bool:
    return True


def aapl_and_brk(symbol: str) -> bool:
    return symbol == "AAPL" or symbol.startswith("BRK.")


TOKENS: list[tuple[str, Grant]] = [
    (mint("*", expires_in=3600), everything),
    (mint(["AAPL", "BRK.*"], expires_in=3600), aapl_and_brk),
]


def with_headers(wire: Mapping[str, Any], extra: Mapping[str, str | bytes]) -> dict[str, Any]:
    """`wire` with `extra` headers replacing any of the same name; values may be raw bytes."""
    replaced = {name.lower() for name in extra}
    headers = [
        (name.encode(), value.encode("latin-1") if isinstance(value, str) else value)
        for name, value in [*httpx.Headers(wire["headers"]).items(), *extra.items()]
        if name.lower() not in replaced or name in extra
    ]
    return {**wire, "headers": headers}


def on(wire: Mapping[str, Any], source: str, target: str) -> dict[str, Any]:
    return {**wire, "url": target + wire["url"].removeprefix(source)}


@st.composite
def fuzzed_headers(draw: st.DrawFn, target: Target) -> dict[str, str | bytes]:
    """Last-Event-ID of every shape, junk credentials, extra headers."""
    current = st.integers(1, target.last_sequence).map(lambda n: f"{target.incarnation}-{n}")
    last_event_id = st.one_of(
        current,  # a real position: resumes
        st.integers(target.last_sequence + 1, 10**40).map(lambda n: f"{target.incarnation}-{n}"),
        st.integers(1, 10**6).map(lambda n: f"0-{n}"),  # an earlier incarnation: reset
        st.integers(1, 10_000).map(lambda n: "1-" + "9" * n),  # 10k digits
        st.sampled_from(["-1", "x-0", "abc--5", "1-1-1", "%00", "NaN", "1e9"]),
        header_values,
    )
    headers: dict[str, str | bytes] = {}
    if draw(st.booleans()):
        headers["Last-Event-ID"] = draw(last_event_id)
    if draw(st.booleans()):
        headers["Authorization"] = draw(garbage_authorization())
    if draw(st.booleans()):
        headers["Cookie"] = b"price_token=" + draw(header_values)
    for name, value in draw(st.dictionaries(header_names, header_values, max_size=4)).items():
        headers.setdefault(name, value)
    return headers


def garbage_authorization() -> st.SearchStrategy[str | bytes]:
    """Credentials a gateway with authentication must refuse with a 401."""
    forged = st.sampled_from(
        [
            mint("*", expires_in=-3600),  # expired
            mint("*", key="another-secret-of-at-least-thirty-two-bytes"),  # wrong key
            mint("*", iss="https://elsewhere.test/"),  # wrong issuer
            mint("*", aud="another-service"),  # wrong audience
            mint({"not": "a list"}),  # a grant that is no grant
            _unsigned(),  # alg: none
        ]
    )
    return st.one_of(
        forged.map(lambda token: f"Bearer {token}"),
        header_values.map(lambda value: b"Bearer " + value),
        st.sampled_from(["Bearer", "Bearer \tx", "Basic dXNlcjpwYXNz", "bearer", "Token abc"]),
        st.builds(
            lambda a, b, c: f"Bearer {a}.{b}.{c}",
            *[st.from_regex(r"\A[A-Za-z0-9_-]{0,40}\Z")] * 3,
        ),
        st.integers(8 * 1024 - 10, 12 * 1024).map(lambda n: "Bearer " + "a" * n),  # too long
        header_values,
    )


def _unsigned() -> str:
    """A token with `alg: none`, which must never be taken as verified."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': 'x', 'symbols': '*', 'exp': 4102444800})}."


valid_credentials = st.tuples(st.sampled_from(TOKENS), st.booleans()).map(
    lambda drawn: (
        {"Cookie": f"price_token={drawn[0][0]}"}
        if drawn[1]
        else {"Authorization": f"Bearer {drawn[0][0]}"},
        drawn[0][1],
    )
)
garbage_credentials: st.SearchStrategy[dict[str, str | bytes]] = st.one_of(
    st.just({}),
    garbage_authorization().map(lambda value: {"Authorization": value}),
    header_values.map(lambda value: {"Cookie": b"price_token=" + value}),
)


def run_fuzz(target: Target, tally: Tally) -> None:
    """The hypothesis run: blocking HTTP from a worker thread while the gateways serve on
    the test's event loop."""
    schema = schemathesis.openapi.from_path(OPENAPI_FILE)
    strategies: dict[tuple[str, GenerationMode], st.SearchStrategy[GeneratedCase]] = {
        key: schema[key[0]]["GET"].as_strategy(generation_mode=key[1]) for key in set(MIX)
    }
    cases = st.sampled_from(MIX).flatmap(lambda key: strategies[key])
    # Kept alive across requests; a stream's connection is closed with it.
    timeout = httpx.Timeout(10.0)
    with (
        httpx.Client(timeout=timeout) as open_client,
        httpx.Client(timeout=timeout) as auth_client,
    ):

        def exchange(
            client: httpx.Client, kind: str, path: str, wire: dict[str, Any], grant: Grant
        ) -> Answer:
            answer = send(client, wire)
            tally.requests += 1
            tally.statuses[f"{path} {answer.status}"] += 1
            tally.by_send[f"{kind} {answer.status}"] += 1
            try:
                check_answer(path, answer)
                if kind == "garbage" and path in PROTECTED:
                    # A token in the query string is refused before credentials are read.
                    first = 400 if token_in_query(answer.response.request) else 401
                    assert answer.status in (first, 431), answer.status
                    if answer.status == 401:
                        assert answer.response.headers["www-authenticate"].startswith("Bearer")
                else:
                    expected = expected_status(path, answer.response.request, target, grant)
                    assert answer.status in expected, f"expected {expected}"
            except AssertionError as exc:
                exc.add_note(describe(kind, answer))
                raise
            return answer

        @settings(
            max_examples=CASES,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            deadline=None,
        )
        @given(
            case=cases,
            headers=fuzzed_headers(target),
            token=valid_credentials,
            garbage=garbage_credentials,
        )
        def fuzz(
            case: GeneratedCase,
            headers: dict[str, str | bytes],
            token: tuple[dict[str, str], Grant],
            garbage: dict[str, str | bytes],
        ) -> None:
            tally.cases += 1
            path = case.operation.path
            wire = case.as_transport_kwargs(base_url=target.open_url)
            secured = on(wire, target.open_url, target.auth_url)
            credentials, grant = token
            try:
                answer = exchange(open_client, "as-is", path, wire, everything)
                case.validate_response(answer.for_schemathesis(), checks=SCHEMATHESIS_CHECKS)
                exchange(open_client, "headers", path, with_headers(wire, headers), everything)
                answer = exchange(
                    auth_client, "token", path, with_headers(secured, credentials), grant
                )
                case.validate_response(answer.for_schemathesis(), checks=SCHEMATHESIS_CHECKS)
                exchange(auth_client, "garbage", path, with_headers(secured, garbage), everything)
            except Exception as exc:
                # A Case has no useful repr of its own in hypothesis' report.
                exc.add_note(f"generated case: {case.as_curl_command()}")
                raise

        fuzz()


async def test_fuzz_the_http_surface_from_its_openapi_description(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    for round_ in range(3):
        for symbol in SYMBOLS:
            await publish(js, symbol, f"{100 + round_}.25")
    last = await publish(js, "AAPL")
    open_gateway = await start_gateway()
    auth_gateway = await start_gateway(**AUTH)
    incarnation = (await event_id(js, 1)).rsplit("-", 1)[0]
    limits = open_gateway.settings
    target = Target(
        open_gateway.url,
        auth_gateway.url,
        incarnation,
        last,
        limits.max_symbols,
        limits.max_header_bytes,
    )
    tally = Tally()

    try:
        await asyncio.to_thread(run_fuzz, target, tally)
    finally:
        # Shown with `pytest -s`, and kept for CI (test-artifacts/ is git-ignored).
        print("\n" + tally.report())
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "security-fuzz.txt").write_text(tally.report() + "\n")

    assert tally.cases == CASES
    assert tally.requests >= MIN_REQUESTS
    assert not [key for key in tally.statuses if key.endswith((" 500", " 502", " 503", " 504"))]
    for gateway in (open_gateway, auth_gateway):
        await assert_unharmed(gateway, js)
