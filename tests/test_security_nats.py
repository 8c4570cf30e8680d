"""NATS authentication, TLS and least-privilege users, against a real nats-server: the
publisher (a process) and the gateway (over HTTP) connect with each method, and each user of
the prod config may do what its program does and nothing more."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from contracts.stream import StreamSettings, ensure_stream
from tests.cluster import PublisherProcess
from tests.conftest import StartGateway
from tests.nats_security import (
    PROD_CONFIG,
    ROOT,
    USERS,
    Material,
    authorization_block,
    connected,
    creds_config,
    nkey_config,
    server_log,
    tls_config,
    token_config,
    users_config,
    violations,
)
from tests.processes import run_command
from tests.servers import NatsServer, eventually
from tests.sse_client import open_stream
from tests.ticks import publish

PASSWORDS = {user: secrets.token_hex(12) for user in USERS}
CONFIGS: dict[str, Callable[[Path], Material]] = {
    "users": lambda directory: users_config(directory, PASSWORDS),
    "token": token_config,
    "nkey": nkey_config,
    "tls": tls_config,
    "creds": creds_config,
}
SYMBOL = "AAPL"
SOURCE = "sec-1"
STREAM = "PRICES"

StartPublisher = Callable[[dict[str, Any]], Awaitable[PublisherProcess]]
Attempt = Callable[[NATS, JetStreamContext], Awaitable[object]]


@pytest.fixture
def material(tmp_path: Path, request: pytest.FixtureRequest) -> Material:
    """The server's config and the clients' credentials; the prod users unless a test
    names another (`indirect` parametrization)."""
    return CONFIGS[getattr(request, "param", "users")](tmp_path)


@pytest.fixture
async def nats_server(tmp_path: Path, material: Material) -> AsyncIterator[NatsServer]:
    """conftest's nats_server (and so start_gateway's), running the material's config."""
    async with NatsServer(tmp_path / "jetstream", config=material.config) as server:
        yield server


async def provision(nats_url: str, settings: dict[str, Any]) -> dict[str, Any]:
    """`python -m contracts.provision` as the Job runs it, with these NATS settings; its
    log line saying what the stream now is."""
    env = {"NATS_URL": nats_url, **{name.upper(): value for name, value in settings.items()}}
    status, _out, err = await run_command("-m", "contracts.provision", env=env)
    assert status == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    done = [line for line in lines if line.get("message") == "stream provisioned"]
    assert len(done) == 1, err
    result: dict[str, Any] = done[0]
    return result


@pytest.fixture
async def start_publisher(
    nats_url: str, tmp_path: Path, material: Material
) -> AsyncIterator[StartPublisher]:
    """`python -m publisher` with the given settings as variables; waits until it publishes.
    Where the config has a provisioner (the prod users), the stream is provisioned first, as
    the Job does, and the publisher only waits for it."""
    processes: list[PublisherProcess] = []

    async def start(settings: dict[str, Any]) -> PublisherProcess:
        if "provisioner" in material.clients:
            await provision(nats_url, material.clients["provisioner"])
            settings = settings | {"publisher_manage_stream": "false"}
        env = {
            "NATS_URL": nats_url,
            "PUBLISHER_SOURCE": SOURCE,
            "PUBLISHER_SYMBOLS": SYMBOL,
            "PUBLISHER_RATE": "20",
            # The shared settings' variables have no prefix: nats_user is NATS_USER.
            **{name.upper(): value for name, value in settings.items()},
        }
        process = PublisherProcess(env, tmp_path / f"publisher-{len(processes)}.log")
        processes.append(process)
        await process.start()

        def publishing() -> bool:
            assert process.process is not None
            if process.process.returncode is not None:
                raise AssertionError(f"publisher exited: {process.log.read_text()[-1000:]}")
            return '"publishing"' in process.log.read_text()

        await eventually(publishing, within=20, what="the publisher publishing")
        return process

    try:
        yield start
    finally:
        for process in processes:
            await process.kill()


@pytest.fixture
async def admin_js(nats_url: str, material: Material) -> AsyncIterator[JetStreamContext]:
    """The operators' user, with the stream provisioned and one tick in it."""
    async with connected(nats_url, material.clients["admin"]) as (nc, _, _):
        js = nc.jetstream()
        await ensure_stream(js, StreamSettings(), protect=True)  # as the Job provisions it
        await publish(js, SYMBOL)
        yield js


async def readiness(url: str) -> tuple[int, str]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/readyz")
    return response.status_code, response.text


# --- the prod users: one source for config, docs and tests -------------------------------------


def test_the_documented_permissions_are_the_prod_config() -> None:
    docs = (ROOT / "docs/nats-permissions.md").read_text()
    assert authorization_block(PROD_CONFIG.read_text()) in docs


async def test_gateway_without_stream_permissions_waits_for_the_stream_to_be_provisioned(
    material: Material,
    start_gateway: StartGateway,
    start_publisher: StartPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.broker.connection")
    gateway = await start_gateway(
        wait_connected=False, ensure_stream=False, **material.clients["gateway"]
    )

    async def waiting() -> bool:
        status, body = await readiness(gateway.url)
        assert status == 503, body
        return f"stream {STREAM} not found" in body

    await eventually(waiting, within=10, what="the gateway connected, waiting for the stream")
    assert "waiting for the stream to be provisioned" in caplog.messages

    await start_publisher(material.clients["publisher"])  # provisions first
    await eventually(
        lambda: _status(gateway.url, 200), within=15, what="the gateway ready with the stream"
    )
    assert violations(material) == []


async def test_publisher_and_gateway_stream_and_resume_with_their_own_users(
    material: Material, start_gateway: StartGateway, start_publisher: StartPublisher
) -> None:
    await start_publisher(material.clients["publisher"])
    gateway = await start_gateway(ensure_stream=False, **material.clients["gateway"])

    async with open_stream(gateway.url, {"symbols": SYMBOL}) as stream:
        first = await stream.next_event()
    assert first.id is not None
    async with open_stream(gateway.url, {"symbols": SYMBOL}, {"Last-Event-ID": first.id}) as stream:
        second = await stream.next_event()

    # The publisher publishes only this symbol: the next tick is the next stored message.
    assert second.sequence == first.sequence + 1
    assert second.json()["source"] == SOURCE
    await gateway.stop()  # its consumer deletes too must be allowed
    assert violations(material) == []


async def test_gateway_user_may_read_the_stream_state_and_a_message_by_subject(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    # The rarer requests of a resume (gateway/resume.py), which streaming alone may not make.
    async with connected(nats_url, material.clients["gateway"]) as (_, js, errors):
        info = await js.stream_info(STREAM, subjects_filter="prices.>")
        assert info.state.subjects == {f"prices.{SYMBOL}": 1}
        message = await js.get_msg(STREAM, seq=1, subject=f"prices.{SYMBOL}", next=True)
        assert message.seq == 1
    assert errors == []


def _consumer(name: str) -> ConsumerConfig:
    return ConsumerConfig(name=name, ack_policy=AckPolicy.NONE, mem_storage=True)


REFUSALS: list[tuple[str, str, str, Attempt]] = [
    # (user, what, subject, attempt): the server refuses to publish or subscribe to `subject`.
    ("publisher", "subscription", "prices.>", lambda nc, js: nc.subscribe("prices.>")),
    (
        "publisher",
        "subscription",
        "_INBOX_gateway.>",
        lambda nc, js: nc.subscribe("_INBOX_gateway.>"),
    ),
    (
        "publisher",
        "publish",
        f"$JS.API.CONSUMER.CREATE.{STREAM}.spy",
        lambda nc, js: js.add_consumer(STREAM, _consumer("spy")),
    ),
    (
        "publisher",
        "publish",
        f"$JS.API.STREAM.UPDATE.{STREAM}",
        lambda nc, js: js.update_stream(StreamSettings().config()),
    ),
    (
        "publisher",
        "publish",
        f"$JS.API.STREAM.CREATE.{STREAM}",
        lambda nc, js: js.add_stream(StreamSettings().config()),
    ),
    (
        "publisher",
        "publish",
        f"$JS.API.STREAM.MSG.DELETE.{STREAM}",
        lambda nc, js: js.delete_msg(STREAM, 1),
    ),
    (
        "publisher",
        "publish",
        f"$JS.API.STREAM.DELETE.{STREAM}",
        lambda nc, js: js.delete_stream(STREAM),
    ),
    (
        "publisher",
        "publish",
        f"$JS.API.STREAM.PURGE.{STREAM}",
        lambda nc, js: js.purge_stream(STREAM),
    ),
    (
        "gateway",
        "publish",
        f"prices.{SYMBOL}",
        lambda nc, js: js.publish(f"prices.{SYMBOL}", b"{}"),
    ),
    (
        "gateway",
        "publish",
        f"$JS.API.STREAM.DELETE.{STREAM}",
        lambda nc, js: js.delete_stream(STREAM),
    ),
    (
        "gateway",
        "publish",
        f"$JS.API.STREAM.PURGE.{STREAM}",
        lambda nc, js: js.purge_stream(STREAM),
    ),
    (
        "gateway",
        "publish",
        "$JS.API.STREAM.CREATE.OTHER",
        lambda nc, js: js.add_stream(StreamConfig(name="OTHER", subjects=["other.>"])),
    ),
    (
        "gateway",
        "publish",
        f"$JS.API.STREAM.UPDATE.{STREAM}",
        lambda nc, js: js.update_stream(StreamSettings().config()),
    ),
    ("gateway", "subscription", "prices.>", lambda nc, js: nc.subscribe("prices.>")),
    (
        "gateway",
        "subscription",
        "_INBOX_publisher.>",
        lambda nc, js: nc.subscribe("_INBOX_publisher.>"),
    ),
]


@pytest.mark.parametrize(
    ("user", "what", "subject", "attempt"),
    REFUSALS,
    ids=[f"{user}-{what}-{subject}" for user, what, subject, _ in REFUSALS],
)
async def test_each_user_is_refused_what_its_program_does_not_do(
    nats_url: str,
    material: Material,
    admin_js: JetStreamContext,
    user: str,
    what: str,
    subject: str,
    attempt: Attempt,
) -> None:
    async with connected(nats_url, material.clients[user]) as (nc, js, errors):
        if what == "publish":
            with pytest.raises(TimeoutError):  # the server drops the request: no answer
                await attempt(nc, js)
        else:
            await attempt(nc, js)
        expected = f'permissions violation for {what} to "{subject.lower()}"'
        await eventually(lambda: any(expected in e for e in errors), within=5, what=expected)
    info = await admin_js.stream_info(STREAM)
    assert info.state.messages == 1, "the stream is as it was"


async def test_a_publisher_cannot_wipe_the_streams_history_with_a_rollup(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    """The attack of issue 17: allow roll-ups with STREAM.UPDATE, then one publish with
    `Nats-Rollup: all` would replace every stored tick. Neither step gets through."""
    for _ in range(15):
        await publish(admin_js, SYMBOL)
    before = (await admin_js.stream_info(STREAM)).state.messages
    assert before == 16
    async with connected(nats_url, material.clients["publisher"]) as (_, js, errors):
        config = StreamSettings().protected_config()
        config.allow_rollup_hdrs = True
        with pytest.raises(TimeoutError):  # the server drops the request: no answer
            await js.update_stream(config)
        refused = f'permissions violation for publish to "$js.api.stream.update.{STREAM.lower()}"'
        await eventually(lambda: any(refused in e for e in errors), within=5, what=refused)
        with pytest.raises(NatsError, match="rollup"):
            await js.publish(f"prices.{SYMBOL}", b"{}", headers={"Nats-Rollup": "all"})
        with pytest.raises(NatsError, match="rollup"):
            await js.publish(f"prices.{SYMBOL}", b"{}", headers={"Nats-Rollup": "sub"})
    info = await admin_js.stream_info(STREAM)
    assert info.state.messages == before, "no stored tick replaced"
    assert (info.config.allow_rollup_hdrs, info.config.deny_purge) == (False, True)


async def test_the_provisioned_stream_refuses_purges_and_deletes_even_from_the_admin(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    with pytest.raises(NatsError):
        await admin_js.purge_stream(STREAM)
    with pytest.raises(NatsError):
        await admin_js.delete_msg(STREAM, 1)
    config = StreamSettings().config()  # deny_* off: JetStream refuses to undo them
    with pytest.raises(NatsError):
        await admin_js.update_stream(config)
    protected = StreamSettings().protected_config()
    protected.allow_rollup_hdrs = True  # roll-ups need purges
    with pytest.raises(NatsError):
        await admin_js.update_stream(protected)
    assert (await admin_js.stream_info(STREAM)).state.messages == 1


async def test_provisioning_is_idempotent_and_keeps_the_data(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    line = await provision(nats_url, material.clients["provisioner"])
    assert (line["deny_delete"], line["deny_purge"], line["rollups"]) == (True, True, False)
    assert line["messages"] == 1
    line = await provision(nats_url, material.clients["provisioner"])
    assert line["messages"] == 1
    # An ensure without the protections (the gateway's, in dev) keeps them.
    async with connected(nats_url, material.clients["admin"]) as (nc, _, _):
        info = await ensure_stream(nc.jetstream(), StreamSettings())
    assert (info.config.deny_delete, info.config.deny_purge) == (True, True)
    assert violations(material) == []


async def test_a_connection_without_credentials_is_refused(nats_url: str) -> None:
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(nats_url, allow_reconnect=False, connect_timeout=5)


async def test_publisher_with_a_wrong_password_exits_2_with_one_line(nats_url: str) -> None:
    password = secrets.token_hex(8)
    status, _, err = await run_command(
        "-m",
        "publisher",
        env={
            "NATS_URL": nats_url,
            "NATS_USER": "publisher",
            "NATS_PASSWORD": password,
            "PUBLISHER_CONNECT_TIMEOUT": "2",
        },
    )
    assert status == 2
    assert err == (
        f"python -m publisher: error: cannot connect to NATS at {nats_url} within 2s: "
        "Authorization Violation\n"
    )
    assert password not in err


async def test_gateway_with_a_wrong_password_says_so_and_is_not_ready(
    material: Material, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.broker.connection")
    password = secrets.token_hex(8)
    gateway = await start_gateway(
        wait_connected=False,
        **(material.clients["gateway"] | {"nats_password": password}),
    )
    await eventually(
        lambda: "NATS refused the credentials, retrying" in caplog.messages,
        within=10,
        what="the refusal logged",
    )
    status, body = await readiness(gateway.url)
    assert status == 503
    assert "not connected to NATS" in body
    assert password not in caplog.text


# --- other methods: token, nkey, mutual TLS, .creds ------------------------------------------


@pytest.mark.parametrize("material", ["token", "nkey", "tls", "creds"], indirect=True)
async def test_publisher_and_gateway_connect_with_each_method(
    material: Material, start_gateway: StartGateway, start_publisher: StartPublisher
) -> None:
    await start_publisher(material.clients["publisher"])
    # The .creds users have the prod permissions: the gateway may not manage the stream.
    gateway = await start_gateway(ensure_stream=False, **material.clients["gateway"])
    async with open_stream(gateway.url, {"symbols": SYMBOL}) as stream:
        event = await stream.next_event()
    assert event.json()["source"] == SOURCE
    assert violations(material) == []


@pytest.mark.parametrize(
    ("material", "refusal"),
    [
        ("token", "authentication error"),
        ("nkey", "authentication error"),
        ("creds", "authentication error"),
        # It trusts the server's CA but shows no certificate of its own.
        ("tls", "client didn't provide a certificate"),
    ],
    indirect=["material"],
)
async def test_a_client_without_the_credential_is_refused(
    nats_url: str, material: Material, refusal: str
) -> None:
    # Asked of the server's log: the client sees a TLS refusal either as an alert or as a
    # lost connection, depending on timing.
    with pytest.raises((NatsError, OSError)):
        async with connected(nats_url, material.refused):
            pass
    log = server_log(material.config)
    await eventually(lambda: refusal in log.read_text(), within=5, what=refusal)


async def _status(url: str, expected: int) -> bool:
    return (await readiness(url))[0] == expected
