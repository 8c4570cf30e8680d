"""Where a client's stream starts: a fresh snapshot, or just after its Last-Event-ID.

Decides, from the stream's state, whether the position a client asks for can be
resumed exactly, must be refused (an id from the future), or is lost and needs an
`event: reset` before a fresh start. Never starts silently past lost data.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamInfo
from nats.js.errors import NotFoundError

from contracts.event_ids import EventPosition, incarnation_of
from gateway.errors import BadRequestError

POSITION_LOST = "position-lost"
STREAM_RECREATED = "stream-recreated"


@dataclass(frozen=True, slots=True)
class Reset:
    """Why the client's position cannot be resumed; sent as `event: reset`."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Start:
    """The consumer's start, and the reset to announce first, if any."""

    incarnation: str
    deliver_policy: DeliverPolicy
    sequence: int | None = None
    reset: Reset | None = None

    @property
    def after(self) -> int:
        """The client's position: the last sequence it had (0: from the latest)."""
        return 0 if self.sequence is None else self.sequence - 1


def fresh(incarnation: str, reset: Reset | None = None) -> Start:
    """Latest stored price of each subject, then live."""
    return Start(incarnation, DeliverPolicy.LAST_PER_SUBJECT, None, reset)


async def resolve_start(
    js: JetStreamContext,
    info: StreamInfo,
    position: EventPosition | None,
    subjects: tuple[str, ...] | None,
) -> Start:
    """The start for a client at `position` (None: fresh) reading `subjects` (None: all).

    Raises BadRequestError for an id past the stream's last sequence.
    """
    assert info.created is not None, "nats-server >= 2.10 reports a stream's creation time"
    incarnation = incarnation_of(info.created)
    if position is None:
        return fresh(incarnation)
    if position.incarnation != incarnation:
        return fresh(
            incarnation,
            Reset(
                STREAM_RECREATED,
                f"event id {position} belongs to an earlier incarnation of the stream; "
                "starting again from the latest prices",
            ),
        )
    state = info.state
    if position.sequence > state.last_seq:
        raise BadRequestError(
            f"event id {position} is past the stream's last sequence {state.last_seq}"
        )
    if position.sequence + 1 < state.first_seq or await _subject_trimmed(
        js, info, position.sequence, subjects
    ):
        return fresh(
            incarnation,
            Reset(
                POSITION_LOST,
                f"events after {position} are no longer stored (aged out or purged); "
                "starting again from the latest prices",
            ),
        )
    return Start(incarnation, DeliverPolicy.BY_START_SEQUENCE, position.sequence + 1)


async def _subject_trimmed(
    js: JetStreamContext,
    info: StreamInfo,
    after: int,
    subjects: tuple[str, ...] | None,
) -> bool:
    """Whether the per-subject limit may have dropped a message of `subjects` after `after`.

    The limit drops a subject's oldest messages first, so a subject at its limit has lost
    messages after `after` only if its oldest retained one comes later than `after + 1`.
    Conservative: it may answer True for a subject that had nothing in between.
    """
    limit = info.config.max_msgs_per_subject or -1
    if limit < 1 or info.state.messages < limit:
        return False  # no subject can have reached the limit
    stream = info.config.name or ""
    wildcard = info.config.subjects[0] if info.config.subjects else ">"
    counts = (await js.stream_info(stream, subjects_filter=wildcard)).state.subjects or {}
    wanted = counts.keys() if subjects is None else [s for s in subjects if s in counts]
    for subject in wanted:
        if counts[subject] < limit:
            continue
        try:
            oldest = await js.get_msg(stream, seq=1, subject=subject, next=True)
        except NotFoundError:
            continue
        if oldest.seq is not None and oldest.seq > after + 1:
            return True
    return False
