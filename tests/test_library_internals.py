"""The private parts of uvicorn and FastStream the project leans on, one test each.

They carry no compatibility promise, so pyproject.toml pins the versions tested. When an
upgrade changes one, the test naming it fails here, not /stocks in production: re-check
the code named in the message before raising the pin.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import signal
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import uvloop
from faststream.nats import NatsBroker
from packaging.requirements import Requirement
from packaging.version import Version
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_local_addr, get_remote_addr
from uvicorn.server import ServerState

from gateway.http.handover import stream_protocol
from gateway.http.limits import bounded_http_protocol

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
HANDOVER = "gateway/http/handover.py"
LIMITS = "gateway/http/limits.py"
CONNECTION = "gateway/http/connection.py"
SERVER = "gateway/server.py"
ACCEPT = "gateway/http/accept.py"
WORKER = "gateway/worker.py"
PUBLISHER = "publisher/app.py"
# Libraries whose internals are used: each must have an upper bound, one minor release wide
# (pre-1.0, a minor release may break anything).
PINNED = ("uvicorn", "faststream", "uvloop")


def changed(internal: str, user: str, what: str = "the hand-over") -> str:
    verb = "rely" if " and " in user else "relies"
    return f"{internal} changed: {user} {verb} on it; re-check {what} before raising the pin"


def uvicorn_changed(internal: str, user: str = HANDOVER, what: str = "the hand-over") -> str:
    return changed(f"uvicorn internal {internal}", user, what)


def faststream_changed(internal: str) -> str:
    return changed(f"FastStream internal {internal}", PUBLISHER, "the publisher's _Broker")


def parameters(function: Callable[..., object]) -> list[str]:
    return list(inspect.signature(function).parameters)


def source(function: Callable[..., object]) -> str:
    return inspect.getsource(function)


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """An app for uvicorn's Config; never called."""


def _config() -> uvicorn.Config:
    return uvicorn.Config(_asgi_app, lifespan="off", log_config=None)


# The versions: installed inside the pins, and the pins narrow.


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    listed = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return {(r := Requirement(line)).name: r for line in listed}


@pytest.mark.parametrize("name", sorted(_requirements()))
def test_the_installed_version_is_inside_the_pinned_range(name: str) -> None:
    requirement = _requirements()[name]
    installed = importlib.metadata.version(name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed, pyproject.toml asks for {requirement}: "
        "test with the pinned versions, or move the pin after testing this one"
    )


@pytest.mark.parametrize("name", PINNED)
def test_a_library_whose_internals_are_used_is_pinned_to_one_minor_release(name: str) -> None:
    requirement = _requirements()[name]
    installed = Version(importlib.metadata.version(name))
    ceiling = Version(f"{installed.major}.{installed.minor + 1}")
    assert any(
        s.operator == "<" and Version(s.version) <= ceiling for s in requirement.specifier
    ), (
        f"{requirement} is not capped at {ceiling} or below: its private internals may change "
        "in any release (tests/test_library_internals.py lists them)"
    )


# uvicorn's HttpToolsProtocol: the gateway subclasses it (limits.py) and takes connections
# over from it mid-request (handover.py).

OVERRIDDEN = {
    "__init__": (["self", "config", "server_state", "app_state", "_loop"], LIMITS),
    "data_received": (["self", "data"], f"{HANDOVER} and {LIMITS}"),
    "on_message_begin": (["self"], f"{HANDOVER} and {LIMITS}"),
    "on_url": (["self", "url"], f"{HANDOVER} and {LIMITS}"),
    "on_header": (["self", "name", "value"], f"{HANDOVER} and {LIMITS}"),
    "on_headers_complete": (["self"], f"{HANDOVER} and {LIMITS}"),
    "on_body": (["self", "body"], f"{HANDOVER} and {LIMITS}"),
    "on_message_complete": (["self"], f"{HANDOVER} and {LIMITS}"),
    "send_400_response": (["self", "msg"], HANDOVER),
}


@pytest.mark.parametrize("method", sorted(OVERRIDDEN))
def test_httptools_protocol_has_each_method_the_gateway_overrides(method: str) -> None:
    expected, user = OVERRIDDEN[method]
    internal = f"HttpToolsProtocol.{method}{tuple(expected[1:])}"
    function = getattr(HttpToolsProtocol, method, None)
    assert inspect.isfunction(function), uvicorn_changed(internal, user)
    assert parameters(function) == expected, uvicorn_changed(internal, user)


async def test_every_method_the_gateway_overrides_is_checked_here() -> None:
    serve: Any = None
    classes = [stream_protocol(serve, _config()), bounded_http_protocol(1024)]
    overrides = {
        name
        for cls in classes
        for name, value in vars(cls).items()
        if inspect.isfunction(value) and hasattr(HttpToolsProtocol, name)
    }
    assert overrides <= OVERRIDDEN.keys(), (
        f"gateway overrides {sorted(overrides - OVERRIDDEN.keys())} of uvicorn's "
        "HttpToolsProtocol: add them to OVERRIDDEN in tests/test_library_internals.py"
    )


@pytest.mark.parametrize(
    ("attribute", "kind"),
    [
        ("parser", object),
        ("cycle", type(None)),
        ("tasks", set),
        ("connections", set),
        ("server_state", ServerState),
        ("loop", asyncio.AbstractEventLoop),
        ("scope", type(None)),
        ("transport", type(None)),
    ],
)
async def test_httptools_protocol_sets_each_attribute_the_hand_over_uses(
    attribute: str, kind: type
) -> None:
    state = ServerState()
    protocol = HttpToolsProtocol(_config(), state, {}, asyncio.get_running_loop())
    message = uvicorn_changed(f"HttpToolsProtocol.{attribute}")
    assert attribute in vars(protocol), message
    assert isinstance(getattr(protocol, attribute), kind), message


async def test_httptools_protocol_shares_the_server_states_connections_and_tasks() -> None:
    # handover.py discards itself from `self.connections` and adds the stream's task to
    # `self.tasks`: the very sets uvicorn's shutdown waits on.
    state = ServerState()
    protocol = HttpToolsProtocol(_config(), state, {}, asyncio.get_running_loop())
    assert protocol.connections is state.connections, uvicorn_changed(
        "HttpToolsProtocol.connections (the server state's set)"
    )
    assert protocol.tasks is state.tasks, uvicorn_changed(
        "HttpToolsProtocol.tasks (the server state's set)"
    )


async def test_httptools_protocol_collects_the_url_the_hand_over_parses() -> None:
    protocol = HttpToolsProtocol(_config(), ServerState(), {}, asyncio.get_running_loop())
    protocol.on_message_begin()
    protocol.on_url(b"/stocks?")
    protocol.on_url(b"symbols=AAPL")
    assert protocol.url == b"/stocks?symbols=AAPL", uvicorn_changed("HttpToolsProtocol.url")
    assert isinstance(protocol.scope, dict), uvicorn_changed("HttpToolsProtocol.scope")


def test_httptools_protocol_makes_its_request_cycle_in_on_headers_complete() -> None:
    # handover.py reads `self.cycle.response_complete` to tell a pipelined request.
    assert "self.cycle = RequestResponseCycle(" in source(HttpToolsProtocol.on_headers_complete), (
        uvicorn_changed("HttpToolsProtocol.cycle")
    )
    assert "self.response_complete = False" in source(RequestResponseCycle.__init__), (
        uvicorn_changed("RequestResponseCycle.response_complete")
    )


def test_httptools_protocol_answers_a_parse_error_with_send_400_response() -> None:
    # handover.py silences it once the connection is the stream's.
    text = source(HttpToolsProtocol.data_received)
    message = uvicorn_changed("HttpToolsProtocol.data_received (parser, send_400_response)")
    assert "self.parser.feed_data(data)" in text, message
    assert "self.send_400_response(" in text, message


def test_httptools_protocol_connection_made_does_what_header_limit_repeats() -> None:
    # limits.py replaces it (the same attributes, the addresses taken more cheaply).
    body = source(HttpToolsProtocol.connection_made).split(") -> None:", 1)[1]
    statements = {line.strip() for line in body.splitlines() if line.strip()}
    assert statements == {
        "self.connections.add(self)",
        "self.transport = transport",
        "self.flow = FlowControl(transport)",
        "self.server = get_local_addr(transport)",
        "self.client = get_remote_addr(transport)",
        'self.scheme = "https" if is_ssl(transport) else "http"',
        "if self.logger.level <= TRACE_LOG_LEVEL:",
        'prefix = "%s:%d - " % self.client if self.client else ""',
        'self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection made", prefix)',
    }, uvicorn_changed("HttpToolsProtocol.connection_made", LIMITS, "HeaderLimit.connection_made")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6, socket.AF_UNIX])
def test_header_limit_takes_the_addresses_uvicorn_would(
    new_loop: Callable[[], asyncio.AbstractEventLoop], family: socket.AddressFamily
) -> None:
    async def connect() -> None:
        loop = asyncio.get_running_loop()
        protocol = bounded_http_protocol(1024)(_config(), ServerState(), {}, loop)
        ours, theirs = socket.socketpair(socket.AF_UNIX)
        if family != socket.AF_UNIX:
            loopback = "::1" if family == socket.AF_INET6 else "127.0.0.1"
            listener = socket.create_server((loopback, 0), family=family)
            theirs = socket.create_connection(listener.getsockname()[:2])
            ours, _ = listener.accept()
            listener.close()
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
        assert protocol.server == get_local_addr(transport)
        assert protocol.client == get_remote_addr(transport)
        assert protocol.scheme == "http"
        transport.close()
        theirs.close()

    if family == socket.AF_INET6 and not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    loop = new_loop()
    try:
        loop.run_until_complete(connect())
    finally:
        loop.close()


# uvicorn's ServerState and Server: SseConnection joins the server's connections and
# writes its default headers; GatewayServer drains first and swallows the re-raised signal.


@pytest.mark.parametrize(("attribute", "kind"), [("connections", set), ("default_headers", list)])
def test_server_state_has_what_the_stream_connection_uses(attribute: str, kind: type) -> None:
    value = getattr(ServerState(), attribute, None)
    assert isinstance(value, kind), uvicorn_changed(
        f"ServerState.{attribute}", CONNECTION, "SseConnection"
    )


def test_server_shutdown_asks_each_connection_to_shut_down_and_waits_for_the_tasks() -> None:
    # SseConnection is in server_state.connections for uvicorn to call its shutdown().
    text = source(uvicorn.Server.shutdown) + source(uvicorn.Server._wait_tasks_to_complete)
    message = uvicorn_changed("Server.shutdown", f"{CONNECTION} and {HANDOVER}", "the shutdown")
    assert "connection.shutdown()" in text, message
    assert "self.server_state.tasks" in text, message
    assert parameters(uvicorn.Server.shutdown) == ["self", "sockets"], message


def test_server_keeps_the_signals_it_caught_in_captured_signals() -> None:
    server = uvicorn.Server(_config())
    message = uvicorn_changed("Server._captured_signals", SERVER, "the exit status after a drain")
    assert getattr(server, "_captured_signals", None) == [], message
    server.handle_exit(signal.SIGTERM, None)
    assert server._captured_signals == [signal.SIGTERM], message
    assert server.should_exit, message
    assert "self._captured_signals" in source(uvicorn.Server.capture_signals), message
    assert parameters(uvicorn.Server.handle_exit) == ["self", "sig", "frame"], message


def test_server_serve_takes_its_signals_through_capture_signals() -> None:
    # A worker's server overrides capture_signals to take none: signals are its supervisor's.
    message = uvicorn_changed("Server.serve / Server.capture_signals", WORKER, "a worker's signals")
    assert "with self.capture_signals():" in source(uvicorn.Server.serve), message
    assert parameters(uvicorn.Server.capture_signals) == ["self"], message


def test_server_listens_on_the_sockets_it_is_given() -> None:
    # Each worker binds the shared port itself (SO_REUSEPORT) and hands uvicorn the socket.
    message = uvicorn_changed("Server.startup(sockets)", WORKER, "the workers' shared port")
    assert parameters(uvicorn.Server.run) == ["self", "sockets"], message
    text = source(uvicorn.Server.startup)
    assert "create_server(create_protocol, sock=sock" in text, message
    assert "sock.close()" in source(uvicorn.Server.shutdown), message


def test_server_only_closes_and_waits_for_its_servers() -> None:
    # server.py replaces uvicorn's servers with Acceptors, which have just these two.
    message = uvicorn_changed("Server.servers", SERVER, "the Acceptors")
    text = source(uvicorn.Server.shutdown) + source(uvicorn.Server._wait_tasks_to_complete)
    uses = {line.strip() for line in text.splitlines() if "server." in line and "self." not in line}
    assert uses == {"server.close()", "await server.wait_closed()"}, message
    assert "self.servers" not in source(uvicorn.Server.main_loop), message


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_connect_accepted_socket_suspends_once_until_connection_made(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # accept.py drives it by hand: one send() makes the transport, the next ends it.
    message = changed("loop.connect_accepted_socket", ACCEPT, "Acceptor._adopt")

    async def adopt() -> None:
        made: list[asyncio.BaseTransport] = []

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.append(transport)

        ours, theirs = socket.socketpair()
        step = asyncio.get_running_loop().connect_accepted_socket(Protocol, ours)
        waiter = step.send(None)
        assert isinstance(waiter, asyncio.Future), message
        assert not made, message
        await asyncio.sleep(0)
        assert waiter.done(), message
        assert made, message
        with pytest.raises(StopIteration) as end:
            step.send(None)
        transport, _ = end.value.value
        assert transport is made[0], message
        transport.close()
        theirs.close()

    loop = new_loop()
    try:
        loop.run_until_complete(adopt())
    finally:
        loop.close()


def test_socket_accept_is_accept_and_a_socket_of_the_listeners_family_and_type() -> None:
    # accept.py does the same with the listener's family and type read once.
    message = changed("socket.socket.accept", ACCEPT, "Acceptor._accept")
    lines = {line.strip() for line in source(socket.socket.accept).splitlines()}
    assert "fd, addr = self._accept()" in lines, message
    assert "sock = socket(self.family, self.type, self.proto, fileno=fd)" in lines, message
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()[:2]):
        fd, _ = listener._accept()  # type: ignore[attr-defined]
        with socket.socket(fileno=fd) as accepted:  # the family and type the kernel says
            assert (accepted.family, accepted.type) == (listener.family, listener.type)


async def test_proxy_headers_middleware_rewrites_the_scope_without_suspending() -> None:
    # handover.py runs it on a handed-over request's scope with one `send(None)`.
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    message = uvicorn_changed("ProxyHeadersMiddleware(app, trusted_hosts)(scope, receive, send)")
    assert parameters(ProxyHeadersMiddleware.__init__) == ["self", "app", "trusted_hosts"], message
    assert parameters(ProxyHeadersMiddleware.__call__) == ["self", "scope", "receive", "send"], (
        message
    )
    scope = {
        "type": "http",
        "scheme": "http",
        "client": ("127.0.0.1", 5000),
        "headers": [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")],
    }
    step = ProxyHeadersMiddleware(app, "127.0.0.1")(scope, _asgi_app, _asgi_app)  # type: ignore[arg-type]
    with pytest.raises(StopIteration):
        step.send(None)
    assert seen == [scope], message
    assert scope["client"] == ("203.0.113.7", 0), message
    assert scope["scheme"] == "https", message


# FastStream's NatsBroker: the publisher's _Broker replaces `_connect` (connecting as the
# gateway does) and `stop` (closing instead of draining a reconnecting connection).


def test_nats_broker_connects_in_connect_with_its_connection_kwargs() -> None:
    message = faststream_changed("NatsBroker._connect")
    assert inspect.iscoroutinefunction(NatsBroker._connect), message
    assert parameters(NatsBroker._connect) == ["self"], message
    # _Broker._connect is this body with the gateway's connect options merged in: a line
    # more here is a step the publisher would skip.
    body = [line.strip() for line in source(NatsBroker._connect).splitlines()[1:]]
    assert body == [
        "connection = await nats.connect(**self._connection_kwargs)",
        "self.config.connect(connection)",
        "return connection",
    ], message


def test_nats_broker_keeps_its_connect_arguments_in_connection_kwargs() -> None:
    broker = NatsBroker(["nats://127.0.0.1:4222"], name="internals")
    message = faststream_changed("NatsBroker._connection_kwargs")
    assert isinstance(broker._connection_kwargs, dict), message
    assert broker._connection_kwargs["servers"] == ["nats://127.0.0.1:4222"], message
    assert broker._connection_kwargs["name"] == "internals", message
    assert parameters(broker.config.connect) == ["connection"], faststream_changed(
        "NatsBroker.config.connect(connection)"
    )


def test_nats_broker_stop_drains_the_connection_it_holds() -> None:
    # _Broker.stop closes a reconnecting connection and sets `_connection` to None first,
    # so that this drain is skipped.
    message = faststream_changed("NatsBroker._connection / NatsBroker.stop")
    assert NatsBroker("nats://127.0.0.1:4222")._connection is None, message
    assert parameters(NatsBroker.stop) == ["self", "exc_type", "exc_val", "exc_tb"], message
    text = source(NatsBroker.stop)
    assert "if self._connection is not None:" in text, message
    assert "await self._connection.drain()" in text, message


def test_faststream_logic_publisher_is_where_the_ticker_imports_it_from() -> None:
    from faststream.nats.publisher import usecase

    assert inspect.isclass(getattr(usecase, "LogicPublisher", None)), changed(
        "FastStream internal faststream.nats.publisher.usecase.LogicPublisher",
        "publisher/ticker.py",
        "its type annotation",
    )
