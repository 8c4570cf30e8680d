"""A seeded random schedule of faults: the same seed gives the same schedule.

Kinds: a gateway SIGKILLed or SIGTERMed and started again after a while, a NATS node
SIGKILLed and started again, a publisher restarted (SIGTERM or SIGKILL, started at once),
and with `partitions` a NATS node cut off from the other two (its links silent) and
reconnected. At most one gateway and one NATS node (killed or cut off) are down at a time:
the run checks that clients stay exact through failures the deployment is sized for (N+1
gateways, an R3 stream that keeps its quorum), not through a total outage. Pure: no I/O, no clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = ("gateway-kill", "gateway-term", "nats-kill", "publisher-restart")
WEIGHTS = (3, 2, 3, 2)
PARTITION = "nats-partition"  # a node's links to the other two cut, then restored


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds from the start of the run
    kind: str
    target: int  # which gateway, node or publisher
    down: float  # seconds until it is started again (0: at once)
    signal: str  # "SIGKILL", "SIGTERM", or "CUT" for a partition

    def describe(self) -> str:
        what = {"gateway": "gateway", "nats": "nats node", "publisher": "publisher"}[
            self.kind.split("-")[0]
        ]
        back = f", back after {self.down:.1f} s" if self.down else ", started again at once"
        return f"{self.at:7.1f} s  {self.signal:<7} {what} {self.target}{back}"


@dataclass(frozen=True, slots=True)
class Shape:
    """What the schedule is drawn over."""

    seconds: float
    gateways: int
    nodes: int
    publishers: int
    partitions: bool = False  # draw PARTITION faults too (namespaces needed)
    gap: tuple[float, float] = (2.0, 6.0)  # seconds between faults
    down: tuple[float, float] = (1.0, 6.0)  # seconds a gateway or node stays down


def plan(seed: int, shape: Shape) -> list[Fault]:
    """The faults of a run, in time order; every one is over (restarted) by `seconds`."""
    rng = random.Random(seed)
    kinds: tuple[str, ...] = KINDS
    weights: tuple[int, ...] = WEIGHTS
    if shape.partitions:
        kinds, weights = (*KINDS, PARTITION), (*WEIGHTS, 3)
    faults: list[Fault] = []
    gateway_up_at = nats_up_at = 0.0  # when the one that is down comes back
    at = rng.uniform(*shape.gap)
    while at < shape.seconds - shape.down[1]:
        kind = rng.choices(kinds, weights)[0]
        down = round(rng.uniform(*shape.down), 1)
        if kind.startswith("gateway") and at >= gateway_up_at:
            target = rng.randrange(shape.gateways)
            sig = "SIGKILL" if kind == "gateway-kill" else "SIGTERM"
            faults.append(Fault(round(at, 1), kind, target, down, sig))
            gateway_up_at = at + down + 1.0  # plus its start-up
        elif kind in ("nats-kill", PARTITION) and at >= nats_up_at:
            how = "SIGKILL" if kind == "nats-kill" else "CUT"
            faults.append(Fault(round(at, 1), kind, rng.randrange(shape.nodes), down, how))
            nats_up_at = at + down + 3.0  # plus the node rejoining its stream group
        elif kind == "publisher-restart":
            sig = rng.choice(("SIGKILL", "SIGTERM"))
            faults.append(Fault(round(at, 1), kind, rng.randrange(shape.publishers), 0.0, sig))
        at += rng.uniform(*shape.gap)
    return faults
