"""What one of our JetStream consumers delivers, and the configuration that says so."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

# Distinguishes this run of the process from an earlier one with the same --gateway-id,
# whose consumers may outlive it (until their inactivity threshold): JetStream refuses to
# re-create a name with another start (10012), and would hand back one with the same.
_RUN = secrets.token_hex(3)


def consumer_name(kind: str, gateway_id: str, number: int | str) -> str:
    """`<kind>-<gateway id>-<run>-<number>`: unique across this process's runs."""
    return f"{kind}-{gateway_id}-{_RUN}-{number}"


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """What a consumer delivers: which subjects, from where."""

    stream: str
    name: str
    filter_subjects: tuple[str, ...]
    deliver_policy: DeliverPolicy
    start_sequence: int | None
    inactive_threshold: float

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.name,
            deliver_policy=self.deliver_policy,
            opt_start_seq=self.start_sequence,
            ack_policy=AckPolicy.NONE,
            filter_subjects=list(self.filter_subjects),
            # Per-client consumers are cheap only in memory with one replica (docs/architecture.md);
            # the stream itself keeps the data, and a lost consumer is recreated on resume.
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=self.inactive_threshold,
        )
