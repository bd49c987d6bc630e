"""Dead letters at the producer's size limit: sent whole up to it, past it
without their content (a short key still copied)."""

from confluent_kafka import Message

from scorer.config import load_config
from scorer.dead_letter import (
    HEADER_FRAMING_BYTES,
    HEADER_PREFIX,
    MESSAGE_OVERHEAD_BYTES,
    SHORT_KEY_BYTES,
    DeadLetters,
    Rejected,
)
from scorer.delivery import Outgoing
from scorer.errors import InvalidRecord

VALUE = b"{" * 5_000
OMITTED = HEADER_PREFIX + "omitted_bytes"


def letter(key: bytes, max_message_bytes: int) -> Outgoing:
    """The dead letter of a malformed record, under this message.max.bytes."""
    setting = f"{{message.max.bytes: {max_message_bytes}}}"
    config = load_config(environ={}, overrides={"kafka.producer_settings": setting})
    message = Message(
        topic="web.page_views",
        partition=2,
        offset=7,
        key=key,
        value=VALUE,
        headers=[("trace", b"abc")],
    )
    rejected = Rejected(message, InvalidRecord("bad_json", "not JSON"))
    return DeadLetters(config, clock=lambda: 0.0).letter(rejected)


def size(item: Outgoing) -> int:
    """What librdkafka counts of it, less its fixed overhead."""
    headers = [len(name) + len(value or b"") for name, value in item.headers]
    body = len(item.key or b"") + len(item.value or b"")
    return body + sum(headers) + HEADER_FRAMING_BYTES * len(headers)


def test_a_dead_letter_of_exactly_the_size_limit_is_sent_whole() -> None:
    whole = letter(b"lead-7", 10_000_000)
    limit = size(whole) + MESSAGE_OVERHEAD_BYTES

    at_the_limit = letter(b"lead-7", limit)
    past_it = letter(b"lead-7", limit - 1)

    assert at_the_limit == whole
    assert (whole.key, whole.value) == (b"lead-7", VALUE)
    assert (past_it.key, past_it.value) == (b"lead-7", None)
    assert past_it.headers[0][0] == HEADER_PREFIX + "class"  # the record's went
    assert past_it.headers[-1] == (OMITTED, str(size(whole)).encode())


def test_a_key_of_exactly_1024_bytes_is_kept_when_the_content_is_not() -> None:
    short, long = b"k" * SHORT_KEY_BYTES, b"k" * (SHORT_KEY_BYTES + 1)

    kept = letter(short, 2_000)
    dropped = letter(long, 2_000)

    assert SHORT_KEY_BYTES == 1024
    assert (kept.key, kept.value) == (short, None)
    assert (dropped.key, dropped.value) == (None, None)
    assert dict(dropped.headers)[OMITTED] == str(size(letter(long, 10**7))).encode()
