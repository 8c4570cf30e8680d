"""The history checker on synthetic histories: an exact client across reconnects passes,
and each way of being wrong (lost, duplicated, out of order, another symbol's tick, not
caught up, an unjustified reset) is caught; a reset where the stream lost data is not."""

from __future__ import annotations

from array import array

from bench.checking import PublishedLog
from resilience.history import History, Stored, judge

# Sequences 1..40 alternate AAA, BBB, CCC, DDD.
NAMES = ["AAA", "BBB", "CCC", "DDD"]


def stored(first_seq: int = 1, last: int = 40) -> Stored:
    log = PublishedLog()
    log.extend((seq, (seq - 1) % 4) for seq in range(first_seq, last + 1))
    return Stored(log, {name: i for i, name in enumerate(NAMES)}, first_seq, last)


def seqs_of(*names: str, start: int = 1, end: int = 40) -> list[int]:
    wanted = {NAMES.index(n) for n in names}
    return [s for s in range(start, end + 1) if (s - 1) % 4 in wanted]


def history(symbols: tuple[str, ...], *segments: list[int], resets: int = 0) -> History:
    h = History(frozenset(symbols))
    if segments:
        h.segments = [array("q", keys) for keys in segments]
    h.resets = [segment[-1] for segment in segments[:-1]][:resets]
    return h


def test_an_exact_history_across_reconnects_passes() -> None:
    keys = seqs_of("AAA", "CCC")
    h = history(("AAA", "CCC"))
    for key in keys:  # as received, in three connections: the ids simply continue
        h.received(key)
    verdict = judge([h, history(("BBB",), seqs_of("BBB", start=9))], stored())
    assert verdict.exact, verdict.describe()
    assert verdict.tally.received == len(keys) + len(seqs_of("BBB", start=9))


def test_each_fault_is_caught() -> None:
    keys = seqs_of("AAA", "BBB")
    cases = {
        "lost": [*keys[:5], *keys[6:]],
        "duplicated": [*keys[:5], *keys[4:]],
        "out_of_order": [*keys[:5], keys[6], keys[5], *keys[7:]],
        "unexpected": [*keys[:5], 3, *keys[5:]],  # 3 is CCC's
        "undelivered": keys[:-2],
    }
    for fault, received in cases.items():
        verdict = judge([history(("AAA", "BBB"), received)], stored())
        assert not verdict.exact, fault
        assert getattr(verdict.tally, fault) >= 1, (fault, verdict.describe())


def test_a_reset_is_a_failure_unless_the_stream_lost_the_data() -> None:
    before, after = seqs_of("DDD", end=20), seqs_of("DDD", start=25)
    # The stream still holds everything: the reset was not needed.
    kept = judge([history(("DDD",), before, after, resets=1)], stored())
    assert (kept.resets, kept.unjustified_resets, kept.exact) == (1, 1, False)
    # The stream starts at 25: what followed 20 is gone, the reset says so rightly.
    lost = judge([history(("DDD",), before, after, resets=1)], stored(first_seq=25))
    assert (lost.resets, lost.unjustified_resets) == (1, 0)
    assert lost.exact, lost.describe()


def test_a_client_that_left_early_is_due_nothing_after_its_last_event() -> None:
    h = history(("AAA",), seqs_of("AAA", end=20))
    assert not judge([h], stored()).exact
    h.ended_early = True
    assert judge([h], stored()).exact


def test_a_fresh_start_after_nothing_received_is_a_new_segment() -> None:
    h = History(frozenset({"BBB"}))
    h.fresh()  # first connection, nothing received
    h.fresh()  # reconnected without an id: still nothing to keep apart
    assert len(h.segments) == 1
    for key in seqs_of("BBB", start=10):
        h.received(key)
    assert judge([h], stored()).exact


def test_the_verdict_names_the_sequences_clients_missed() -> None:
    keys = seqs_of("AAA", "BBB")  # 1, 2, 5, 6, 9, 10, ...
    gap = [k for k in keys if not 9 <= k <= 14]  # 9, 10, 13, 14 missed
    verdict = judge([history(("AAA", "BBB"), gap), history(("AAA",), seqs_of("AAA"))], stored())
    assert dict(verdict.missed) == {9: 1, 10: 1, 13: 1, 14: 1}
    assert "missed: 9-10 (1 clients), 13-14 (1 clients)" in verdict.describe()
    # Each symbol is due from its own first event (the judge's rule): AAA starting at 17
    # after BBB's 10 has not missed 13, but has missed 25.
    late = history(("AAA", "BBB"), [k for k in keys if k >= 10 and k not in (13, 25)])
    assert dict(judge([late], stored()).missed) == {25: 1}


def test_the_verdict_lists_the_connections_of_a_client_that_missed_events() -> None:
    h = History(frozenset({"AAA", "BBB"}))
    h.connected(8001, 0)
    for key in (1, 2, 5, 6):
        h.received(key)
    h.connected(8002, 6)  # resumed after 6, but the gateway skipped 9 and 10
    for key in seqs_of("AAA", "BBB", start=13):
        h.received(key)
    verdict = judge([h, history(("AAA",), seqs_of("AAA"))], stored())
    assert verdict.traces == [
        "a client of AAA,BBB missed [9, 10]: :8001 fresh -> 1, :8002 after 6 -> 13"
    ]
