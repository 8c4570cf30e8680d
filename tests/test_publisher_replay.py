"""`python -m publisher --replay FILE`: recorded ticks into a real JetStream, in file order,
at the recorded pace, with the normal publisher's Nats-Msg-Ids; a bad row is one error line."""

from __future__ import annotations

import csv
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from contracts.messages import PriceTick
from publisher.errors import ReplayFileError
from publisher.replay import Pace, check_file, read_ticks
from tests.test_publisher_cli import PROG, error_lines, run_publisher

SAMPLES = Path(__file__).resolve().parent.parent / "publisher" / "samples"


async def stored(js: JetStreamContext) -> list[RawStreamMsg]:
    state = (await js.stream_info("PRICES")).state
    if state.messages == 0:
        return []
    return [await js.get_msg("PRICES", seq) for seq in range(state.first_seq, state.last_seq + 1)]


def msg_id(msg: RawStreamMsg) -> str:
    assert msg.headers is not None
    return str(msg.headers["Nats-Msg-Id"])


def test_the_samples_are_valid_recordings() -> None:
    assert check_file(SAMPLES / "ticks.csv", "sample") > 300
    assert check_file(SAMPLES / "ticks.ndjson", "sample") >= 40


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "symbol,price\nAAPL,1\n", "a.csv:1: the CSV header needs the columns"),
        ("a.csv", "symbol,price,timestamp\nAAPL,1,1700000000\nAAPL,abc,1700000001\n",
         "a.csv:3: price 'abc' is not a number"),
        ("a.csv", "symbol,price,timestamp\n\nBAD*,1,1700000000\n", "a.csv:3: invalid tick: symbol"),
        ("a.csv", "symbol,price,timestamp\nAAPL,1,yesterday\n", "a.csv:2: invalid tick: timestamp"),
        ("a.csv", "symbol,price,timestamp\nAAPL,1.1234567,1\n", "a.csv:2: invalid tick: price"),
        ("a.csv", "symbol,price,timestamp\nAAPL,1,1,extra\n", "a.csv:2: 4 fields, the header has"),
        ("a.csv", "symbol,price,timestamp,id\nAAPL,1,1700000000,x\n", "a.csv:2: 'id' is reserved"),
        ("a.ndjson", '{"symbol":"AAPL","price":1,"timestamp":1700000000}\n{"symbol":\n',
         "a.ndjson:2: not JSON"),
        ("a.ndjson", "[1, 2]\n", "a.ndjson:1: a tick must be a JSON object, got list"),
        ("a.ndjson", '\n{"symbol":"AAPL","price":"1","timestamp":1700000000}\n',
         "a.ndjson:2: invalid tick: price: Value error, price must be a JSON number"),
        ("a.ndjson", '{"symbol":"AAPL","timestamp":1}\n', "a.ndjson:1: no 'price'"),
        ("a.csv", "symbol,price,timestamp\n", "a.csv: no ticks in the file"),
    ],
)  # fmt: skip
def test_a_bad_row_is_an_error_naming_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ReplayFileError) as raised:
        check_file(path, "rec")
    assert str(raised.value).startswith(f"{tmp_path}/{message}")


def test_rows_keep_their_fields_and_take_the_publishers_source(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(
        "timestamp,symbol,price,exchange,source\n"
        "2025-03-14T14:30:00.303Z,BRK.B,511.080000,XNYS,someone-else\n"
        "1741962600.5,AAPL,213.49,,\n"
    )
    first, second = [row.tick for row in read_ticks(path, "rec-1")]
    assert first.encode() == (
        b'{"symbol":"BRK.B","price":511.080000,"timestamp":"2025-03-14T14:30:00.303000Z",'
        b'"source":"rec-1","exchange":"XNYS"}'
    )
    assert second.timestamp == datetime.fromisoformat("2025-03-14T14:30:00.500000+00:00")
    assert second.model_extra == {}  # empty cells are no fields


@pytest.mark.parametrize(
    ("speed", "recorded", "due"),
    [
        (1.0, [100.0, 100.5, 102.0], [0.0, 0.5, 2.0]),
        (4.0, [100.0, 100.5, 102.0], [0.0, 0.125, 0.5]),
        (0.0, [100.0, 100.5, 102.0], [0.0, 0.0, 0.0]),
        # Out of order in the file: due with the row above, never before it.
        (1.0, [100.0, 101.0, 100.5, 103.0], [0.0, 1.0, 1.0, 3.0]),
    ],
)
def test_ticks_are_due_at_their_recorded_offsets_over_the_speed(
    speed: float, recorded: list[float], due: list[float]
) -> None:
    pace = Pace(speed)
    assert [pace.due(at) for at in recorded] == due


async def test_replay_publishes_every_row_in_file_order_then_exits_0(
    nats_url: str, js: JetStreamContext
) -> None:
    sample = SAMPLES / "ticks.csv"
    status, _, err = await run_publisher(
        "--replay", str(sample), "--speed", "0", "--source", "rec-1",
        env={"NATS_URL": nats_url}, timeout=90,
    )  # fmt: skip
    assert status == 0, err
    with sample.open(newline="") as f:
        rows = list(csv.DictReader(f))
    msgs = await stored(js)
    assert len(msgs) == len(rows)
    counters = []
    for msg, row in zip(msgs, rows, strict=True):
        tick = PriceTick.decode(msg.data or b"")
        assert (tick.symbol, tick.price, tick.source) == (
            row["symbol"],
            Decimal(row["price"]),
            "rec-1",
        )
        assert tick.model_extra == {"exchange": row["exchange"]}
        # The price's digits as recorded, not through a float.
        assert f'"price":{row["price"]},'.encode() in (msg.data or b"")
        source, _, counter = msg_id(msg).partition(":")
        assert source == "rec-1"
        counters.append(int(counter))
    assert counters == list(range(counters[0], counters[0] + len(rows)))  # fmt: skip


async def test_a_replay_run_twice_stores_both_runs_under_distinct_ids(
    nats_url: str, js: JetStreamContext
) -> None:
    """As a restarted publisher: the counter starts from the clock, so the second run's ids
    are new to the duplicate window and none of its ticks is dropped."""
    sample = SAMPLES / "ticks.ndjson"
    rows = check_file(sample, "rec-2")
    for _ in range(2):
        status, _, err = await run_publisher(
            "--replay", str(sample), "--speed", "0", "--source", "rec-2",
            env={"NATS_URL": nats_url}, timeout=60,
        )  # fmt: skip
        assert status == 0, err
    ids = [msg_id(m) for m in await stored(js)]
    assert len(ids) == len(set(ids)) == 2 * rows


async def test_replay_keeps_the_recorded_pace(
    nats_url: str, js: JetStreamContext, tmp_path: Path
) -> None:
    recording = tmp_path / "paced.ndjson"
    offsets = [0.0, 0.3, 0.6, 1.2]
    recording.write_text(
        "".join(
            f'{{"symbol":"AAPL","price":{100 + i},"timestamp":{1741962600 + at}}}\n'
            for i, at in enumerate(offsets)
        )
    )
    status, _, err = await run_publisher(
        "--replay", str(recording), "--speed", "2", env={"NATS_URL": nats_url}
    )
    assert status == 0, err
    stamps = [PriceTick.decode(m.data or b"").timestamp for m in await stored(js)]
    assert len(stamps) == len(offsets)
    # Each tick is stamped when published: never before its offset / speed (lower bounds
    # only, so a slow machine cannot fail this).
    for stamp, at in zip(stamps, offsets, strict=True):
        assert (stamp - stamps[0]).total_seconds() >= at / 2 - 0.01, (stamp, at)


async def test_a_bad_row_exits_2_naming_the_line_and_publishes_nothing(
    nats_url: str, js: JetStreamContext, tmp_path: Path
) -> None:
    recording = tmp_path / "broken.csv"
    recording.write_text(
        "timestamp,symbol,price\n"
        "2025-03-14T14:30:00.303Z,AAPL,213.49\n"
        "2025-03-14T14:30:00.338Z,AAPL,-1\n"
    )
    status, out, err = await run_publisher("--replay", str(recording), env={"NATS_URL": nats_url})
    assert status == 2
    assert "Traceback" not in err
    [line] = error_lines(err)
    assert line.startswith(f"{PROG}: error: {recording}:3: invalid tick: price")
    assert err.splitlines() == [line]
    assert out == ""
    assert await stored(js) == []


async def test_a_missing_file_or_negative_speed_exits_2_with_one_line(tmp_path: Path) -> None:
    status, _, err = await run_publisher("--replay", str(tmp_path / "nope.csv"))
    assert status == 2
    assert error_lines(err) == [
        f"{PROG}: error: --replay: {tmp_path}/nope.csv is not a readable file"
    ]
    status, _, err = await run_publisher("--replay", str(SAMPLES / "ticks.csv"), "--speed", "-1")
    assert status == 2
    assert "--speed must be >= 0" in error_lines(err)[0]
