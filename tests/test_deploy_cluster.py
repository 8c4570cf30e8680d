"""The production topology as real processes: a 3-node NATS JetStream cluster (stream R3),
two gateway replicas and two publishers with their own sources, while 50 clients stream.
A gateway is SIGKILLed, the other is rolled (SIGTERM, restart), a NATS node is killed and
restarted; every client ends with exactly what was stored for its symbols."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import signal
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.nats_options import tls_context
from contracts.stream import StreamSettings
from contracts.symbols import subject_for
from tests.cluster import NatsCluster, NatsNode, PublisherProcess, stream_ensured
from tests.processes import GatewayProcess
from tests.resuming_client import ResumingClient
from tests.servers import eventually
from tests.ticks import publish

SOURCES = {
    "pub-east": ["AAPL", "MSFT", "GOOG", "BRK.B"],
    "pub-west": ["MSFT", "AMZN", "RDS-A", "NVDA"],
}
SYMBOLS = sorted({symbol for symbols in SOURCES.values() for symbol in symbols})
RATE = 5.0  # ticks per second per symbol and source
CLIENTS = 50
STREAM = StreamSettings(replicas=3)
# The cluster runs the prod overlay's nats.conf (users, JetStream limits, sync_interval),
# on loopback ports.
NATS_CONFIG = Path(__file__).resolve().parent.parent / "deploy/overlays/prod/nats.conf"
PASSWORDS = {
    user: secrets.token_hex(12) for user in ("gateway", "publisher", "provisioner", "admin")
}
# As the Deployments set them (deploy/base): the stream's settings are shared by both.
STREAM_ENV = {"STREAM_REPLICAS": "3"}
GATEWAY_ARGS = ("--inactive-threshold", "5", "--drain-period", "2", "--heartbeat", "1")
# Each program as its least-privileged NATS user, as the prod Deployments set it.
USER_ENV = {
    user: {
        "NATS_USER": user,
        "NATS_PASSWORD": PASSWORDS[user],
        "NATS_INBOX_PREFIX": f"_INBOX_{user}",
    }
    for user in ("gateway", "publisher")
}
USER_ENV["gateway"]["GATEWAY_ENSURE_STREAM"] = "false"
# The stream is provisioned beforehand (the Job stream-provision; here the topology fixture).
USER_ENV["publisher"]["PUBLISHER_MANAGE_STREAM"] = "false"
HOLD = 100  # ticks stored after each recovery before the next fault (~2.5 s)


@dataclass
class Topology:
    cluster: NatsCluster
    nc: NATS
    js: JetStreamContext
    gateways: list[GatewayProcess]
    logs: Path


@pytest.fixture
async def topology(tmp_path: Path) -> AsyncIterator[Topology]:
    cluster = NatsCluster(
        tmp_path / "nats",
        config=NATS_CONFIG.read_text(),
        env={
            "GATEWAY_NATS_PASSWORD": PASSWORDS["gateway"],
            "PUBLISHER_NATS_PASSWORD": PASSWORDS["publisher"],
            "PROVISIONER_NATS_PASSWORD": PASSWORDS["provisioner"],
            "ADMIN_NATS_PASSWORD": PASSWORDS["admin"],
        },
    )
    gateways: list[GatewayProcess] = []
    try:
        await cluster.start()
        # The test provisions, inspects and publishes as the operators' user.
        nc = await cluster.connect("deploy-test", "admin", PASSWORDS["admin"])
        try:
            js = nc.jetstream(timeout=5)
            await eventually(
                lambda: stream_ensured(js, STREAM), within=30, what="PRICES stream with 3 replicas"
            )
            await eventually(lambda: stream_current(js), within=30, what="stream replicas current")
            for _ in range(2):
                gateway = GatewayProcess(
                    cluster.urls(),
                    *GATEWAY_ARGS,
                    env=STREAM_ENV | USER_ENV["gateway"] | cluster.tls_env("gateway"),
                )
                gateways.append(gateway)
            await asyncio.gather(*(gateway.start() for gateway in gateways))
            yield Topology(cluster, nc, js, gateways, tmp_path)
        finally:
            for name, gateway in zip("ab", gateways, strict=False):
                # Kept beside the NATS and publisher logs (stop() removes its own copy).
                with contextlib.suppress(OSError):
                    shutil.copyfile(gateway.log, tmp_path / f"gateway-{name}.log")
                await gateway.stop()
            await nc.close()
    finally:
        await cluster.stop()


def symbol_sets() -> list[list[str] | None]:
    """Every fifth client asks for everything; the others for one to three symbols."""
    sets: list[list[str] | None] = []
    for i in range(CLIENTS):
        if i % 5 == 0:
            sets.append(None)
        else:
            size = 1 + i % 3
            sets.append([SYMBOLS[(i + k) % len(SYMBOLS)] for k in range(size)])
    return sets


async def stored(js: JetStreamContext) -> list[tuple[int, str, str]]:
    """(stream sequence, subject, source) of every stored message, read back through a
    consumer of our own that is deleted afterwards."""
    name = "deploy-test-readback"
    config = ConsumerConfig(
        name=name, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, mem_storage=True
    )
    await js.add_consumer(STREAM.name, config)
    try:
        last = (await js.stream_info(STREAM.name)).state.last_seq
        subscription = await js.pull_subscribe_bind(name, stream=STREAM.name)
        messages: list[tuple[int, str, str]] = []
        while not messages or messages[-1][0] < last:
            for msg in await subscription.fetch(1000, timeout=5):
                source = json.loads(msg.data)["source"]
                messages.append((msg.metadata.sequence.stream, msg.subject, source))
        await subscription.unsubscribe()
        return messages
    finally:
        await js.delete_consumer(STREAM.name, name)


async def last_sequence(js: JetStreamContext) -> int:
    """The stream's last sequence, asked again while the cluster elects a stream leader."""
    answers: list[int] = []

    async def answered() -> bool:
        try:
            async with asyncio.timeout(2):
                answers.append((await js.stream_info(STREAM.name)).state.last_seq)
        except (NatsError, TimeoutError):
            return False
        return True

    await eventually(answered, within=70, what="the stream answering (a leader elected)")
    return answers[-1]


async def node_under(topology: Topology, gateway: GatewayProcess) -> tuple[NatsNode, str]:
    """The node holding `gateway`'s live-feed consumer (`live-<gateway id>-<n>`, the id read from
    its log), or the stream leader when it has none (shared feed off)."""
    ids = re.findall(
        r'"message": "gateway starting".*?"gateway": "([^"]+)"', gateway.log.read_text()
    )
    hosts = {
        info.name: info.cluster.leader
        for info in await topology.js.consumers_info(STREAM.name)
        if info.cluster is not None
    }
    live = [
        host for consumer, host in hosts.items() if ids and consumer.startswith(f"live-{ids[-1]}-")
    ]
    name, role = (live[-1] if live else None), "the gateway's live feed"
    leader = await stream_leader(topology.js)
    if name is None:
        name, role = leader, "the stream leader"
    elif name == leader:
        role += " and the stream leader"
    return next(n for n in topology.cluster.nodes if n.name == name), role


async def stream_leader(js: JetStreamContext) -> str:
    info = await js.stream_info(STREAM.name)
    assert info.cluster is not None
    assert info.cluster.leader is not None
    return info.cluster.leader


async def stream_current(js: JetStreamContext) -> bool:
    """Every replica of the stream is back and caught up."""
    try:
        info = await js.stream_info(STREAM.name)
    except (NatsError, TimeoutError):
        return False
    cluster = info.cluster
    return (
        cluster is not None
        and cluster.leader is not None
        and len(cluster.replicas or []) == 2
        and all(peer.current and not peer.offline for peer in cluster.replicas or [])
    )


def behind(clients: list[ResumingClient], sequence: int) -> str:
    """Which clients are not past `sequence`, and how their last connections ended."""
    late = [
        f"client {i} at {c.session.sequences[-1:]}, ended {c.session.endings[-3:]}"
        for i, c in enumerate(clients)
        if not streaming_past([c], sequence)
    ]
    return f"{len(late)} behind {sequence}: " + "; ".join(late[:5])


def last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1][:300] if lines else "(empty)"


async def stalled_consumers(nc: NATS, js: JetStreamContext, sequence: int) -> str:
    """For a failure message: the consumers that delivered nothing after `sequence`, where
    they run, what the server says of them, and what one fresh pull request gets from each
    (a message: the server has one it did not send; 404: nothing new on its subjects, as
    when the publisher of those symbols stopped)."""
    try:
        infos = await js.consumers_info(STREAM.name)
    except (NatsError, TimeoutError) as exc:
        return repr(exc)
    stalled = [i for i in infos if i.delivered is None or (i.delivered.stream_seq or 0) <= sequence]
    lines = [f"{len(stalled)} of {len(infos)} consumers delivered nothing after {sequence}"]
    for info in stalled:
        probe = json.dumps({"batch": 1, "no_wait": True}).encode()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM.name}.{info.name}"
        try:
            reply = await nc.request(subject, probe, timeout=2)
            status = (reply.headers or {}).get("Status") or f"message {reply.reply}"
        except (NatsError, TimeoutError) as exc:
            status = repr(exc)
        lines.append(
            f"{info.name} on {info.cluster and info.cluster.leader} delivered "
            f"{info.delivered and info.delivered.stream_seq} pending {info.num_pending} "
            f"waiting {info.num_waiting}, a fresh pull gets {status}"
        )
    return "; ".join(lines)


def differences(clients: list[ResumingClient], expected: list[list[int]]) -> str:
    """What each wrong client lacks or has too much of, for a failure message."""
    wrong = []
    for i, (client, want) in enumerate(zip(clients, expected, strict=True)):
        got = client.session.sequences
        if got != want:
            missing = sorted(set(want) - set(got))
            doubled = len(got) - len(set(got))
            wrong.append(
                f"client {i}: {len(got)} of {len(want)}, missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, {doubled} repeated, "
                f"ordered {got == sorted(got)}, ended {client.session.endings[-2:]}"
            )
    return f"{len(wrong)} clients differ: " + "; ".join(wrong[:6])


def streaming_past(clients: list[ResumingClient], sequence: int) -> bool:
    """Every client has had an event stored after `sequence`: it is live again."""
    return all(c.session.events and c.session.sequences[-1] > sequence for c in clients)


@dataclass
class Phases:
    """Resume gaps (disconnect -> first event on the new replica) by fault."""

    clients: list[ResumingClient]
    gaps: dict[str, list[float]] = field(default_factory=dict)
    _marks: list[int] = field(default_factory=list)

    def begin(self) -> None:
        self._marks = [len(c.session.resume_gaps) for c in self.clients]

    def end(self, name: str) -> None:
        self.gaps[name] = sorted(
            gap
            for client, mark in zip(self.clients, self._marks, strict=True)
            for gap in client.session.resume_gaps[mark:]
        )

    def report(self) -> str:
        every = sorted(gap for gaps in self.gaps.values() for gap in gaps)
        return "; ".join(
            f"{name}: {_summary(gaps)}" for name, gaps in [*self.gaps.items(), ("all", every)]
        )


def _summary(gaps: list[float]) -> str:
    if not gaps:
        return "no resumes"
    p50, p99 = statistics.median(gaps), _percentile(gaps, 0.99)
    return f"{len(gaps)} resumes p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms"


async def test_topology_loses_and_repeats_nothing_through_gateway_and_nats_failures(
    topology: Topology,
) -> None:
    js = topology.js
    a, b = topology.gateways
    sets = symbol_sets()
    clients = [
        ResumingClient(
            [a.url, b.url] if i % 2 == 0 else [b.url, a.url],
            {} if symbols is None else {"symbols": ",".join(symbols)},
            retry=0.1,
        )
        for i, symbols in enumerate(sets)
    ]
    publishers = [
        PublisherProcess(
            {
                "NATS_URL": topology.cluster.urls(),
                **USER_ENV["publisher"],
                **topology.cluster.tls_env("publisher"),
                "PUBLISHER_SOURCE": source,
                "PUBLISHER_SYMBOLS": ",".join(symbols),
                "PUBLISHER_RATE": str(RATE),
                **STREAM_ENV,
            },
            topology.logs / f"{source}.log",
        )
        for source, symbols in SOURCES.items()
    ]
    phases = Phases(clients)
    started = time.monotonic()
    # The nodes run the prod config: its users are enforced (TLS too, with a certificate).
    tls = topology.cluster.tls_env("admin")
    with pytest.raises(NatsError, match=r"(?i)authorization"):
        await nats.connect(
            topology.cluster.urls().split(",")[0],
            allow_reconnect=False,
            connect_timeout=2,
            tls=tls_context(tls["NATS_TLS_CA"], tls["NATS_TLS_CERT"], tls["NATS_TLS_KEY"]),
        )

    async def live_after_now(what: str) -> None:
        await _live_after_now(topology, clients, publishers, what)

    try:
        async with asyncio.TaskGroup() as tg:
            # A fresh client first gets the latest price of each symbol: one seed tick per
            # symbol before anyone connects makes "all that is stored" what each must get.
            for symbol in SYMBOLS:
                await publish(js, symbol, source="seed")
            for client in clients:
                tg.create_task(client.run())
            await eventually(
                lambda: all(
                    len(c.session.events) == len(s or SYMBOLS)
                    for c, s in zip(clients, sets, strict=True)
                ),
                within=20,
                what="every client got the latest prices",
            )
            for publisher in publishers:
                await publisher.start()
            await live_after_now("clients streaming from both gateways")

            # 1. A gateway dies without a word: its clients resume on the other.
            phases.begin()
            assert a.process is not None
            a.process.kill()
            await a.process.wait()
            await live_after_now("clients of the killed gateway resumed on the other")
            phases.end("gateway SIGKILL")
            await a.start()

            # 2. A rolling update of the other: drained in waves, exit 0, a new process.
            phases.begin()
            assert await b.signal(signal.SIGTERM) == 0
            await live_after_now("clients of the drained gateway resumed")
            phases.end("gateway SIGTERM")
            await b.start()

            # 3. The NATS node under the clients dies, and comes back: the one holding the
            # live-feed consumer of the gateway that now serves every client.
            phases.begin()
            node, role = await node_under(topology, a)
            await node.kill()
            await live_after_now(f"streaming again without NATS node {node.name} ({role})")
            await node.start()
            await eventually(
                lambda: stream_current(js), within=30, what=f"{node.name} back in the stream"
            )
            await live_after_now("streaming with the whole cluster")
            phases.end(f"NATS node SIGKILL ({role})")

            for publisher in publishers:
                assert await publisher.stop() == 0, f"publisher failed; see {publisher.log}"
            messages = await stored(js)
            expected = [
                [seq for seq, subject, _ in messages if s is None or subject in _subjects(s)]
                for s in sets
            ]
            try:
                await eventually(
                    lambda: all(
                        c.session.sequences == e for c, e in zip(clients, expected, strict=True)
                    ),
                    within=30,
                    what="every client has every stored tick of its symbols",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; {differences(clients, expected)}") from None
            for client in clients:
                client.stop()
    finally:
        for publisher in publishers:
            await publisher.kill()

    _assert_exact_after_failover(clients, expected)
    assert {source for _, _, source in messages} == {"seed", *SOURCES}
    # Clients' consumers go with them (a SIGKILLed gateway's after --inactive-threshold);
    # what may remain is each running gateway's one process-wide live-feed consumer.
    await eventually(
        lambda: _only_live_feeds(js, len(topology.gateways)),
        within=30,
        what="no client consumer left after the clients closed",
    )
    for gateway in topology.gateways:
        assert await gateway.signal(signal.SIGTERM) == 0
    await eventually(
        lambda: _no_consumers(js), within=30, what="no consumer left once the gateways stopped"
    )
    checked = sum(len(c.session.events) for c in clients)
    print(
        f"\ndeploy topology: {len(messages)} ticks stored, {checked} events checked in "
        f"{time.monotonic() - started:.1f} s; {phases.report()}"
    )


async def _live_after_now(
    topology: Topology,
    clients: list[ResumingClient],
    publishers: list[PublisherProcess],
    what: str,
    hold: int = HOLD,
) -> None:
    """Every client is streaming again, and `hold` more ticks have been stored."""
    js = topology.js
    last = await last_sequence(js)
    for past, label in ((last, what), (last + hold, f"{what}: {hold} more ticks")):
        try:
            await eventually(lambda past=past: streaming_past(clients, past), within=30, what=label)
        except AssertionError as exc:
            report = await stalled_consumers(topology.nc, js, past)
            logs = "; ".join(f"{p.log.name}: {last_line(p.log)}" for p in publishers)
            raise AssertionError(f"{exc}; {behind(clients, past)}; {report}; {logs}") from None


def _assert_exact_after_failover(clients: list[ResumingClient], expected: list[list[int]]) -> None:
    for i, (client, want) in enumerate(zip(clients, expected, strict=True)):
        got = client.session.sequences
        assert got == want, (i, len(got), len(want), sorted(set(want) ^ set(got))[:10])
        assert not client.session.resets
        assert client.session.resume_gaps, "every client failed over at least once"


def _subjects(symbols: list[str]) -> set[str]:
    return {subject_for(symbol) for symbol in symbols}


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


async def _no_consumers(js: JetStreamContext) -> bool:
    return (await js.stream_info(STREAM.name)).state.consumer_count == 0


async def _only_live_feeds(js: JetStreamContext, gateways: int) -> bool:
    names = [info.name for info in await js.consumers_info(STREAM.name)]
    return len(names) <= gateways and all(name.startswith("live-") for name in names)
