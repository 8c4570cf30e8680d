"""gateway.broker.streams.cut_off: when a stream's info comes from a leader cut off from
its replicas (a partition), or from a node that knows no leader. The same answers came
from a real 3-node cluster cut in tests/test_ops_partitions.py; here, each case alone."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import StreamInfo

from gateway.broker.streams import QUORUM_SILENCE, cut_off

HEARD = 10_000_000  # 10 ms, in nanoseconds, as the server reports it
SILENT = int((QUORUM_SILENCE + 1) * 1e9)


def info(cluster: dict[str, Any] | None) -> StreamInfo:
    response: dict[str, Any] = {
        "config": {"name": "PRICES"},
        "state": {"messages": 0, "bytes": 0, "first_seq": 0, "last_seq": 0, "consumer_count": 0},
    }
    if cluster is not None:
        response["cluster"] = cluster
    parsed: StreamInfo = StreamInfo.from_response(response)
    return parsed


def peers(*active: int, offline: bool = False) -> list[dict[str, Any]]:
    return [
        {"name": f"n{i + 1}", "current": True, "offline": offline, "active": a}
        for i, a in enumerate(active)
    ]


@pytest.mark.parametrize(
    "cluster",
    [
        None,  # outside a cluster
        {"leader": "n0"},  # one replica
        {"leader": "n0", "replicas": peers(HEARD, HEARD)},
        {"leader": "n0", "replicas": peers(HEARD, SILENT)},  # one lost: still a majority
        {"leader": "n0", "replicas": peers(HEARD, HEARD, SILENT, SILENT)},  # 3 of 5
    ],
)
def test_answers_from_a_leader_with_a_majority_are_trusted(cluster: dict[str, Any] | None) -> None:
    assert cut_off(info(cluster)) is None


@pytest.mark.parametrize(
    ("cluster", "why"),
    [
        ({"leader": "n0", "replicas": peers(SILENT, SILENT)}, "n0 has lost its replicas"),
        ({"leader": "n0", "replicas": peers(HEARD, HEARD, offline=True)}, "lost its replicas"),
        ({"leader": "n0", "replicas": peers(HEARD, SILENT, SILENT, SILENT)}, "lost"),
        ({"replicas": peers(HEARD, HEARD, HEARD)}, "stream PRICES has no leader"),
    ],
)
def test_answers_from_a_cut_off_leader_or_none_are_not(cluster: dict[str, Any], why: str) -> None:
    assert why in (cut_off(info(cluster)) or "")
