"""`make bench` in miniature: the harness runs W1-W4 and W5 (a storm of 100 clients) end
to end on tiny sizes, writes its JSON, and the gateway loses nothing; the delivery-control
workloads (W1C, W1S) take tens of seconds even when small, so their judges are tested here
on synthetic inputs instead.
Speed is never asserted here."""

from __future__ import annotations

import asyncio
import json
import sys
from array import array
from pathlib import Path

import pytest

from bench.checking import ConflatedCheck, DeliveryCheck, PublishedLog, Tally
from bench.headlines import headlines
from bench.report import delivery_table
from bench.slow_reader import rss_figures
from bench.wire import ProtocolError, ResponseDecoder, event_key

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--quick",
    "--workloads", "W1,W2,W3,W4,W5",
    "--loaders", "2",
    "--w1-clients", "20",
    "--w1-rates", "50",
    "--w1-step-seconds", "2",
    "--w2-connections", "50",
    "--w3-events", "200",
    "--w4-rate", "20",
    "--w4-seconds", "2",
    "--w4-lifetime", "1",
    "--w4-publish-rate", "50",
    "--w5-clients", "100",
    "--w5-rate", "50",
    "--w5-timeout", "30",
]  # fmt: skip
HEADLINES = {
    "gateway": [
        "w1_max_deliveries_per_s",
        "w1_50_p99_ms",
        "w2_50_open",
        "w2_50_rss_per_connection_bytes",
        "w3_catch_up_s",
        "w4_connect_p99_ms",
        "w4_streams_left",
        "w5_streaming_again_p100_s",
        "w5_jetstream_api_calls",
        "w5_jetstream_consumers_created",
    ],
    "naive": ["w1_max_deliveries_per_s", "w2_50_open", "w4_connect_p99_ms"],
}


async def run_bench(output: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench",
        *TINY,
        "--output",
        str(output),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(240):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@pytest.mark.timeout(300)
async def test_quick_bench_writes_every_figure_and_loses_nothing(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    status, printed = await run_bench(output)
    assert status == 0, printed[-4000:]
    assert "w1_max_deliveries_per_s" in printed  # the table

    report = json.loads(output.read_text())
    assert {"config", "machine", "runs", "summary", "ratios", "zero_loss"} <= report.keys()
    assert report["zero_loss"] is True
    run = report["runs"][0]
    for target in ("gateway", "naive"):
        for workload in ("W1", "W2", "W4"):
            assert "error" not in run[target][workload], run[target][workload]
    assert run["gateway"]["W3"]["zero_loss"] is True
    storm = run["gateway"]["W5"]
    assert storm["zero_loss"] is True, storm["loss"]
    assert storm["streaming_again"]["never"] == 0, storm
    assert storm["loss"]["received"] > 0
    assert "skipped" in run["naive"]["W5"]
    step = run["gateway"]["W1"]["steps"][0]
    assert step["latency"]["samples"] > 0
    assert step["deliveries_per_s"] > 0

    for target, keys in HEADLINES.items():
        figures = report["summary"][target]
        missing = [k for k in keys if figures.get(k) is None]
        assert not missing, (target, missing)
        for kind in ("lost", "duplicated", "unexpected"):
            assert figures[kind] == 0, (target, kind, figures[kind])
    assert report["summary"]["gateway"]["out_of_order"] == 0
    assert report["summary"]["gateway"]["w4_streams_left"] == 0


# The harness's own judges, table-driven: a wrong checker would make every figure moot.

# Published keys 1..12: symbol 0 at 1,4,7,10; symbol 1 at 2,5,8,11; symbol 2 at 3,6,9,12.
LOG = [(key, (key - 1) % 3) for key in range(1, 13)]


def tally(received: list[int], *, closed: bool = False, final: bool = True) -> Tally:
    log = PublishedLog()
    log.extend(LOG)
    check = DeliveryCheck(frozenset({0, 1}))
    check.advance(array("q", received), log)
    end = check.last if closed else log.last_key
    return check.tally(log, end, final=final, closed=closed)


@pytest.mark.parametrize(
    ("received", "closed", "final", "expected"),
    [
        ([1, 2, 4, 5, 7, 8, 10, 11], False, True, {}),
        # a snapshot: the latest of symbol 1 (5) after the latest of symbol 0 (4)
        ([4, 5, 7, 8, 10, 11], False, True, {}),
        ([1, 2, 4, 5, 8, 10, 11], False, True, {"lost": 1}),  # 7 skipped
        ([1, 2, 4, 4, 5, 7, 8, 10, 11], False, True, {"duplicated": 1, "out_of_order": 1}),
        ([1, 2, 3, 4, 5, 7, 8, 10, 11], False, True, {"unexpected": 1}),  # 3 is symbol 2's
        ([1, 2, 5, 4, 7, 8, 10, 11], False, True, {"out_of_order": 1}),
        ([1, 2, 4, 5, 7, 8], False, True, {"undelivered": 2}),  # 10 and 11 never came
        ([1, 2, 4, 5, 7, 8], False, False, {"pending": 2}),
        ([1, 2, 4, 5, 8], True, True, {"lost": 1}),  # left after 8, without 7
    ],
)
def test_delivery_check_counts_each_kind_of_fault(
    received: list[int], closed: bool, final: bool, expected: dict[str, int]
) -> None:
    counted = tally(received, closed=closed, final=final)
    faults = ("lost", "pending", "undelivered", "duplicated", "unexpected", "out_of_order")
    assert {k: getattr(counted, k) for k in faults if getattr(counted, k)} == expected


def test_decoder_finds_the_same_events_however_the_bytes_are_cut() -> None:
    events = [b"id: x-%d\nevent: stockUpdate\ndata: {}" % n for n in range(1, 6)]
    body = b"retry: 2000\n\n" + b"\n\n".join(events[:2]) + b"\n\n"
    body2 = b"\n\n".join(events[2:]) + b"\n\n: heartbeat\n\n"
    reads = [  # one read per write of the server's: the head, each chunk, the last chunk
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n" % (len(body), body),
        b"%x;ext=1\r\n%s\r\n" % (len(body2), body2),
        b"0\r\n\r\n",
    ]
    wire = b"".join(reads)
    cuts = [[wire[i : i + step] for i in range(0, len(wire), step)] for step in (1, 2, 7)]
    for cut in [*cuts, [wire], reads]:
        decoder = ResponseDecoder()
        blocks = [b for data in cut for b in decoder.feed(data)]
        assert decoder.status == 200
        assert decoder.ended
        assert [event_key(b) for b in blocks if b.startswith(b"id: ")] == [1, 2, 3, 4, 5]
        assert blocks[0] == b"retry: 2000"
        assert blocks[-1] == b": heartbeat"


@pytest.mark.parametrize("chunk", [b"zz\r\nabc\r\n", b"\r\n\r\n"])
def test_decoder_refuses_a_read_whose_chunk_size_is_not_one(chunk: bytes) -> None:
    decoder = ResponseDecoder()
    decoder.feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    with pytest.raises(ProtocolError):
        decoder.feed(chunk)


# A conflated client (symbols 0 and 1 of LOG, interval 250 ms, tolerance 50 ms): receive
# times in seconds, one per key.


def conflated_tally(
    received: list[int], times: list[float], *, closed: bool = False, final: bool = True
) -> Tally:
    log = PublishedLog()
    log.extend(LOG)
    check = ConflatedCheck(frozenset({0, 1}), 0.25, 0.05)
    # each tick published 10 ms before it was received
    stamps = [t - 0.01 for t in times]
    check.advance(array("q", received), log, array("d", times), array("d", stamps))
    return check.tally(log, log.last_key, final=final, closed=closed)


AWAY = "conflated_away"
CONFLATED_FAULTS = (
    "lost",
    "pending",
    "undelivered",
    "duplicated",
    "unexpected",
    "out_of_order",
    "too_soon",
    "gaps_under",
    "conflated_away",
)


@pytest.mark.parametrize(
    ("received", "times", "closed", "final", "expected"),
    [
        # every tick, 0.3 s apart per symbol: nothing conflated away
        ([1, 2, 4, 5, 7, 8, 10, 11], [0, 0, 0.3, 0.3, 0.6, 0.6, 0.9, 0.9], False, True, {}),
        # 4 and 5 replaced by 7 and 8: conflated away, not lost
        ([1, 2, 7, 8, 10, 11], [0, 0, 0.3, 0.3, 0.6, 0.6], False, True, {"conflated_away": 2}),
        # the latest of each symbol only (a snapshot), then nothing: all due has come
        ([10, 11], [0, 0], False, True, {}),
        # 0.21 s apart: within the tolerance
        ([1, 2, 4, 5, 10, 11], [0, 0, 0.21, 0.21, 0.6, 0.6], False, True, {"conflated_away": 2}),
        # 0.1 s apart: too soon, twice
        (
            [1, 2, 4, 5, 10, 11],
            [0, 0, 0.1, 0.1, 0.6, 0.6],
            False,
            True,
            {"too_soon": 2, "gaps_under": 2, "conflated_away": 2},
        ),
        # the last ticks (10, 11) never came: pending, then undelivered
        ([1, 2, 4, 5], [0, 0, 0.3, 0.3], False, False, {"pending": 2}),
        ([1, 2, 4, 5], [0, 0, 0.3, 0.3], False, True, {"undelivered": 2}),
        ([1, 2, 4, 5], [0, 0, 0.3, 0.3], True, True, {}),  # it left: nothing more is due
        # 4, 7 and 5, 8 conflated away; one 2 too many
        ([1, 2, 2, 10, 11], [0, 0, 0, 0.3, 0.3], False, True, {"duplicated": 1, AWAY: 4}),
        # 2 after 4 is judged no further (11 is symbol 1's first): only 7 conflated away
        ([1, 4, 2, 10, 11], [0, 0.3, 0.3, 0.6, 0.6], False, True, {"out_of_order": 1, AWAY: 1}),
        ([1, 2, 3, 10, 11], [0, 0, 0.3, 0.6, 0.6], False, True, {"unexpected": 1, AWAY: 4}),
    ],
)  # fmt: skip
def test_conflated_check_counts_each_kind_of_fault(
    received: list[int],
    times: list[float],
    closed: bool,
    final: bool,
    expected: dict[str, int],
) -> None:
    counted = conflated_tally(received, times, closed=closed, final=final)
    assert {k: getattr(counted, k) for k in CONFLATED_FAULTS if getattr(counted, k)} == expected


def test_conflated_check_keeps_the_closest_gap_and_waits_for_unlogged_keys() -> None:
    log = PublishedLog()
    log.extend(LOG[:6])  # keys 1..6 logged so far
    check = ConflatedCheck(frozenset({0, 1}), 0.25, 0.05)
    keys, times = array("q", [1, 2, 4, 5, 7]), array("d", [0, 0, 0.26, 0.3, 0.6])
    check.advance(keys, log, times, times)
    assert check.checked == 4  # 7 is not in the log yet: judged once it is
    log.extend(LOG[6:])
    check.advance(keys, log, times, times)
    counted = check.tally(log, log.last_key, final=True, closed=False)
    assert counted.min_gap_ms == 260.0
    assert counted.undelivered == 2  # 10 and 11
    total = Tally(min_gap_ms=300.0)
    total.add(counted)
    total.add(Tally())
    assert total.min_gap_ms == 260.0
    assert total.undelivered == 2


def test_rss_slope_is_taken_over_the_second_half() -> None:
    mib = 2**20
    # Growing 10 MB in the first half, then 1 MB/min: the slope is the second half's.
    samples = [
        (float(t), round((100 + min(t, 10) + max(0, t - 10) / 60) * mib), None) for t in range(21)
    ]
    figures = rss_figures(samples)
    assert figures["slope_mb_per_min"] == pytest.approx(1.0, abs=0.01)
    assert figures["max_minus_min_mb"] == pytest.approx(10.17, abs=0.01)
    assert figures["send_queue_max_kb"] is None


def test_delivery_figures_reach_the_summary_and_their_table() -> None:
    def mode(deliveries: int, cpu_us: float, loss: dict[str, float]) -> dict[str, object]:
        return {
            "deliveries_per_s": deliveries,
            "server_cpu_percent": 50.0,
            "cpu_us_per_tick": cpu_us,
            "cpu_us_per_delivery": 1.0,
            "bytes_per_tick": 100,
            "latency": {"p99_ms": 10.0},
            "conflated_away": 0,
            "loss": loss,
        }

    step = {
        "rate_target": 1000.0,
        "exact": mode(100_000, 200.0, {}),
        "conflated": mode(20_000, 50.0, {"undelivered": 1, "too_soon": 2, "min_gap_ms": 240.0}),
        "ratios": {"deliveries_per_s": 0.2, "cpu_us_per_tick": 0.25},
    }
    slow = {
        "rss": {"slope_mb_per_min": 0.01, "max_minus_min_mb": 0.1},
        "closed_by_server": False,
        "live_fallbacks": 0,
        "slow_client_disconnects": 0,
        "loss": {"undelivered": 3},  # the exact one falling behind is not a fault
    }
    figures = headlines({"W1C": {"steps": [step]}, "W1S": {"conflated": slow, "exact": slow}})
    assert figures["w1c_1000_conflated_cpu_us_per_tick"] == 50.0
    assert figures["w1c_1000_ratio_deliveries_per_s"] == 0.2
    assert figures["w1c_conflated_min_gap_ms"] == 240.0
    assert figures["w1s_conflated_rss_slope_mb_per_min"] == 0.01
    assert (figures["too_soon"], figures["last_tick_missing"], figures["undelivered"]) == (2, 4, 0)
    rows = delivery_table({"gateway": figures}).splitlines()
    assert [r.split()[1] for r in rows[2:]] == ["exact", "conflated", "conflated/exact"]


def test_a_loader_reading_late_is_not_the_gateway_sending_too_soon() -> None:
    """Symbol 0's 1 and 4 arrive in one read (gap 0), but 1 was published 0.3 s before
    that read: the gateway may well have sent them 250 ms apart."""
    log = PublishedLog()
    log.extend(LOG)
    check = ConflatedCheck(frozenset({0}), 0.25, 0.05)
    keys = array("q", [1, 4, 10])
    check.advance(keys, log, array("d", [0.3, 0.3, 0.6]), array("d", [0.0, 0.29, 0.59]))
    counted = check.tally(log, log.last_key, final=True, closed=False)
    assert (counted.too_soon, counted.gaps_under, counted.min_gap_ms) == (0, 1, 0.0)
    assert counted.conflated_away == 1  # 7
