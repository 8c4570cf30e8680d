"""What a JetStream delivery's reply subject says about the message it carries.

`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the form with
domain and account hash before the stream (12 tokens). Read per message: no regex, one
split.
"""

from __future__ import annotations


def delivery(reply: str) -> tuple[bytes, int]:
    """The stream sequence (ASCII digits) in a JetStream delivery's reply subject, and how
    many messages the consumer still had pending after it."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return tokens[5].encode(), int(tokens[8])
    return tokens[7].encode(), int(tokens[10])


def consumer_sequence(reply: str) -> int:
    """The consumer's own delivery count in a JetStream delivery's reply subject: 1, 2, 3...
    for a consumer that never redelivers (ours acknowledge nothing)."""
    tokens = reply.split(".")
    return int(tokens[6 if len(tokens) == 9 else 8])


def stored_at(reply: str) -> float:
    """When JetStream stored a delivered message (its clock), as epoch seconds."""
    tokens = reply.split(".")
    return int(tokens[7 if len(tokens) == 9 else 9]) / 1e9
