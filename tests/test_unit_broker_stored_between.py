"""gateway.broker.streams.stored_between, against a real nats-server: whether a message of
a client's subjects lies between two sequences, asked of every subject at once."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from contracts.symbols import subject_for
from gateway.broker.streams import stored_between
from gateway.errors import NatsUnavailableError
from tests.feeds import STREAM
from tests.ticks import publish

SUBJECTS = tuple(subject_for(s) for s in ("AAPL", "MSFT", "NVDA"))


async def test_only_a_message_of_the_subjects_in_between_counts(js: JetStreamContext) -> None:
    before = await publish(js, "NVDA")
    other = await publish(js, "TSLA")  # not the client's
    last = await publish(js, "NVDA")  # the last of the subjects asked

    async def between(after: int, through: int) -> bool:
        return await stored_between(js, STREAM, SUBJECTS, after, through, timeout=2)

    assert not await between(before, other)  # only TSLA in between
    assert not await between(last, last + 10)  # nothing after NVDA's last
    assert await between(before, last)
    assert await between(0, before)


async def test_a_missing_stream_is_no_answer(js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    with pytest.raises(NatsUnavailableError, match="could not read the stream"):
        await stored_between(js, "NO_SUCH_STREAM", SUBJECTS, 0, 10, timeout=2)
