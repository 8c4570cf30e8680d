"""The gateway's NATS user in an account of its own (deploy/overlays/prod/nats.conf), against
a real nats-server running the prod accounts: the gateway streams, resumes and delays through
the API the stream's account exports to it, and the consumers its credential can make are
ephemeral, on PRICES only, and deliver to no program outside the stream's account."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import APIError

from contracts.stream import StreamSettings, ensure_stream
from gateway.delivery import DELAY
from gateway.settings import Settings
from tests.conftest import StartGateway
from tests.nats_security import USERS, Material, connected, users_config, violations
from tests.servers import NatsServer, eventually
from tests.sse_client import open_stream
from tests.test_deploy_stream import stream_settings
from tests.ticks import publish

pytestmark = pytest.mark.timeout(60)

PASSWORDS = {user: secrets.token_hex(12) for user in USERS}
STREAM = "PRICES"
SYMBOL = "AAPL"
# JetStream's answer to a durable name on the create subject without a consumer name.
EPHEMERAL_WITH_DURABLE_NAME = 10020
# ... and to an inactivity threshold above the stream's consumer limit.
INACTIVE_THRESHOLD_EXCESS = 10153
# The prod stream's limits that concern consumers, on this one server.
PROVISIONED = StreamSettings(
    max_consumers=stream_settings("prod").max_consumers,
    consumer_max_inactive=stream_settings("prod").consumer_max_inactive,
)


@pytest.fixture
def material(tmp_path: Path) -> Material:
    return users_config(tmp_path, PASSWORDS)


@pytest.fixture
async def nats_server(tmp_path: Path, material: Material) -> AsyncIterator[NatsServer]:
    """conftest's nats_server (and so start_gateway's), running the prod accounts."""
    async with NatsServer(tmp_path / "jetstream", config=material.config) as server:
        yield server


@pytest.fixture
async def admin_js(nats_url: str, material: Material) -> AsyncIterator[JetStreamContext]:
    """The operators' user (in the stream's account), with the stream provisioned as the Job
    does and one tick in it."""
    async with connected(nats_url, material.clients["admin"]) as (nc, _, _):
        js = nc.jetstream()
        await ensure_stream(js, PROVISIONED, protect=True)
        await publish(js, SYMBOL)
        yield js


async def test_the_gateway_streams_resumes_and_delays_through_its_account(
    nats_url: str, material: Material, admin_js: JetStreamContext, start_gateway: StartGateway
) -> None:
    # A delayed stream starts from direct gets (by time, and the last of each subject); the
    # ticks come from the publisher's own account.
    gateway = await start_gateway(ensure_stream=False, **material.clients["gateway"])
    async with connected(nats_url, material.clients["publisher"]) as (nc, _, _):
        publisher = nc.jetstream()
        async with (
            open_stream(gateway.url, {"symbols": SYMBOL}) as live,
            open_stream(gateway.url, {"symbols": SYMBOL, "delay": "1"}) as delayed,
        ):
            first = await live.next_event()
            assert first.sequence == 1  # the snapshot: the tick stored before
            second = await publish(publisher, SYMBOL, "101")
            assert (await live.next_event()).sequence == second
            while (event := await delayed.next_event()).sequence < second:
                pass
            assert event.sequence == second
        assert first.id is not None
        async with open_stream(
            gateway.url, {"symbols": SYMBOL}, {"Last-Event-ID": first.id}
        ) as resumed:
            assert (await resumed.next_event()).sequence == second
    await gateway.stop()
    assert await admin_js.consumers_info(STREAM) == [], "every consumer deleted at stop"
    assert violations(material) == []


async def test_every_consumer_the_gateway_can_make_is_ephemeral(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    """The attack of issue 17: a durable file consumer without an inactivity threshold, which
    would keep its state on the nodes for good."""
    forever = ConsumerConfig(name="keep", durable_name="keep", ack_policy=AckPolicy.NONE)
    async with connected(nats_url, material.clients["gateway"]) as (_, js, _):
        with pytest.raises(APIError) as refused:
            await js.add_consumer(STREAM, forever)
        assert refused.value.err_code == EPHEMERAL_WITH_DURABLE_NAME
        with pytest.raises(NatsError):  # the legacy durable subject is not even mapped
            await js.add_consumer(STREAM, ConsumerConfig(durable_name="keep"))
        # Without a threshold of its own, a consumer gets the stream's longest.
        plain = await js.add_consumer(STREAM, ConsumerConfig(name="plain"))
        assert plain.config.durable_name is None
        assert plain.config.inactive_threshold
    assert [c.name for c in await admin_js.consumers_info(STREAM)] == ["plain"]


async def test_the_gateway_cannot_make_a_consumer_on_another_stream(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    await admin_js.add_stream(StreamConfig(name="OTHER", subjects=["other.>"]))
    config = ConsumerConfig(name="spy", ack_policy=AckPolicy.NONE)
    async with connected(nats_url, material.clients["gateway"]) as (nc, js, errors):
        with pytest.raises(NatsError):
            await js.add_consumer("OTHER", config)
        refused = 'permissions violation for publish to "$js.api.consumer.create.other.spy"'
        await eventually(lambda: any(refused in e for e in errors), within=5, what=refused)
        # Nor through the create request it may send, naming the other stream in the body.
        request = {"stream_name": "OTHER", "config": config.as_dict()}
        answer = await nc.request(
            "$JS.API.CONSUMER.CREATE.PRICES.spy", json.dumps(request).encode(), timeout=5
        )
        assert "error" in json.loads(answer.data)
    assert await admin_js.consumers_info("OTHER") == []


async def test_a_push_consumer_of_the_gateway_delivers_to_no_program(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    """NATS cannot refuse a push consumer (its deliver subject is in the request's body), but
    it delivers in the stream's account, whose only users are the operators and the
    provisioner: not to the gateway's own inbox, nor into a publisher's."""
    spies = {"gateway": "_INBOX_gateway.spy", "publisher": "_INBOX_publisher.spy"}
    spied: list[Msg] = []

    async def spy(msg: Msg) -> None:
        spied.append(msg)

    async with (
        connected(nats_url, material.clients["gateway"]) as (gateway_nc, gateway_js, _),
        connected(nats_url, material.clients["publisher"]) as (publisher_nc, _, _),
        connected(nats_url, material.clients["admin"]) as (admin_nc, _, _),
    ):
        # Where the deliveries do go: the stream's account. Once the operators' client has
        # them, a spy that could receive them has them too, by the end of a round trip.
        seen = [await admin_nc.subscribe(subject) for subject in spies.values()]
        clients = {"gateway": gateway_nc, "publisher": publisher_nc}
        for user, subject in spies.items():
            await clients[user].subscribe(subject, cb=spy)
            await clients[user].flush()
        for user, subject in spies.items():
            config = ConsumerConfig(
                name=f"push-{user}", deliver_subject=subject, ack_policy=AckPolicy.NONE
            )
            await gateway_js.add_consumer(STREAM, config)
        for subscription in seen:
            assert (await subscription.next_msg(timeout=5)).data
        for client in clients.values():
            await client.flush()
    assert spied == []


async def test_no_consumer_outlives_the_streams_inactivity_limit(
    nats_url: str, material: Material, admin_js: JetStreamContext
) -> None:
    """What the request's body still chooses, the inactivity threshold, is bounded by the
    stream as the deployment provisions it (STREAM_CONSUMER_MAX_INACTIVE)."""
    limit = PROVISIONED.consumer_max_inactive
    async with connected(nats_url, material.clients["gateway"]) as (_, js, _):
        forever = ConsumerConfig(name="forever", inactive_threshold=10 * 365 * 86400.0)
        with pytest.raises(APIError) as refused:
            await js.add_consumer(STREAM, forever)
        assert refused.value.err_code == INACTIVE_THRESHOLD_EXCESS
        plain = await js.add_consumer(STREAM, ConsumerConfig(name="plain"))
        assert plain.config.inactive_threshold == limit
        # What the gateway itself asks for, at most: a delayed feed at the longest delay.
        longest = Settings().inactive_threshold + DELAY[-1]
        delayed = await js.add_consumer(
            STREAM, ConsumerConfig(name="delayed", inactive_threshold=longest)
        )
        assert delayed.config.inactive_threshold == longest
