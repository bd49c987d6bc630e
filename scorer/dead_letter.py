"""Dead letters: a record that cannot be scored, kept whole, with why.

The record goes to the dead-letter topic as it came (key, value, headers)
with `scorer.error.*` headers saying what was wrong and where it was read,
so it can be fixed and copied back; the scorer moves on. Its content never
reaches the log, which says only where it was and why.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Message

from scorer.config import Config
from scorer.delivery import Outgoing
from scorer.errors import InvalidRecord
from scorer.logs import Repeats

log = logging.getLogger(__name__)

HEADER_PREFIX = "scorer.error."
# librdkafka's default message.max.bytes: its producer refuses anything
# larger (key, value and headers), while the broker takes up to 1 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
MESSAGE_OVERHEAD_BYTES = 512  # record framing librdkafka counts in that size
# Each header adds the varint lengths of its name and value (up to 5 bytes
# each) to that size: a thousand empty headers cost some 2 kB, not nothing.
HEADER_FRAMING_BYTES = 10
SHORT_KEY_BYTES = 1024  # a key still copied when a dead letter is too big
# Dead letters of one topic and reason logged at WARNING per 30 s; the rest
# are logged at DEBUG and counted in the next WARNING line.
LOGGED_PER_WINDOW = 10


@dataclass(slots=True)
class Rejected:
    """A record that cannot be scored, on its way to the dead-letter topic."""

    message: Message
    error: InvalidRecord
    error_class: str = "InvalidRecord"
    """The class of the exception; another than InvalidRecord is a bug."""
    scored: bool = False
    """Scored, but its outputs cannot be encoded: counted as dead-lettered only."""

    def __post_init__(self) -> None:
        # A caught exception's traceback holds the frame that caught it, and
        # that frame the batch: a cycle that only the collector frees. Whole
        # batches of large records then outlived their turn (RSS past 1 GB
        # on 1 MB malformed records). The dead letter needs none of it.
        self.error.__traceback__ = None
        self.error.__cause__ = self.error.__context__ = None


class DeadLetters:
    """Builds the dead letters of one scorer: its topic, its size limit."""

    def __init__(
        self, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.topic = config.topics.dead_letter
        self.max_message_bytes = max_message_bytes(config)
        # A producer writing garbage sends thousands a second; the log keeps
        # a few lines per topic and reason every 30 s, the topic keeps them all.
        self.repeats = Repeats(clock=clock, burst=LOGGED_PER_WINDOW)

    def letter(self, rejected: Rejected) -> Outgoing:
        """The record with its reason headers, logged by place and reason."""
        message, error = rejected.message, rejected.error
        topic, partition, offset = placed(message)
        reason_headers = {
            "class": rejected.error_class,
            "reason": error.reason,
            "message": error.message,
            "field": error.field or "",
            "topic": topic,
            "partition": str(partition),
            "offset": str(offset),
        }
        # Reason headers already on the record (a dead letter copied back,
        # or a producer's own) would be read before the scorer's.
        headers = [h for h in _headers(message) if not h[0].startswith(HEADER_PREFIX)]
        headers += [(HEADER_PREFIX + k, v.encode()) for k, v in reason_headers.items()]

        self._log(rejected, (topic, partition, offset))

        letter = Outgoing(
            topic=self.topic,
            key=message.key(),
            value=message.value(),
            headers=headers,
            source=(topic, partition),
        )
        return self._within_limit(
            letter, len(reason_headers), (topic, partition, offset)
        )

    def _log(self, rejected: Rejected, where: tuple[str, int, int]) -> None:
        error = rejected.error
        note = self.repeats.admit((where[0], error.reason, rejected.error_class))
        # Held back at WARNING, each one is still there at DEBUG.
        level = logging.WARNING if note is not None else logging.DEBUG
        if not log.isEnabledFor(level):
            return

        # The message stays out of the log: it may quote the record. A field
        # is named only where there is one (not as `field=None`).
        text = "dead-lettered topic=%s partition=%d offset=%d reason=%s"
        facts: list[object] = [*where, error.reason]
        if error.field:
            text += " field=%s"
            facts.append(error.field)
        text += " error=%s" + (note or "")
        log.log(level, text, *facts, rejected.error_class)

    def _within_limit(
        self, letter: Outgoing, added_headers: int, where: tuple[str, int, int]
    ) -> Outgoing:
        """The dead letter, or a copy without its content if it is too big.

        A record the broker took can exceed what the producer may send once
        the reason headers are added; refusing it would stop the scorer at
        it for good. The content stays at its offset in the source topic.
        """
        omitted = _size(letter)
        if omitted + MESSAGE_OVERHEAD_BYTES <= self.max_message_bytes:
            return letter

        log.warning(
            "dead letter too big; sent without its content "
            "topic=%s partition=%d offset=%d bytes=%d",
            *where,
            omitted,
        )
        short_key = letter.key is not None and len(letter.key) <= SHORT_KEY_BYTES
        note = (HEADER_PREFIX + "omitted_bytes", str(omitted).encode())
        return Outgoing(
            topic=letter.topic,
            key=letter.key if short_key else None,
            value=None,
            headers=[*letter.headers[-added_headers:], note],
            source=letter.source,
        )


def max_message_bytes(config: Config) -> int:
    """The most the scorer's producer sends: its message.max.bytes."""
    kafka = config.kafka
    given = kafka.producer_settings.get("message.max.bytes")
    if given is None:
        given = kafka.settings.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES)
    return int(given)


def placed(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed (hence placed) message."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _size(item: Outgoing) -> int:
    headers = sum(
        len(name) + len(value or b"") + HEADER_FRAMING_BYTES
        for name, value in item.headers
    )
    return len(item.key or b"") + len(item.value or b"") + headers


def _headers(message: Message) -> list[tuple[str, str | bytes | None]]:
    original = message.headers() or []
    pairs = original.items() if isinstance(original, dict) else original
    return [(str(pair[0]), pair[1]) for pair in pairs]
