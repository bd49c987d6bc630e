"""`scorer watch`: the output topic's events as JSON lines, as they come.

The scorer writes its outputs in the output topic's format (Avro by
default), which a console consumer shows as bytes. This reads them as the
scorer's downstream consumers would and prints each output event as one
JSON line on stdout: `score_changed` with its reason, `mql_crossed` with
its direction. A message that is not an output event is named on stderr by
topic, partition and offset, never printed: it may hold anything.

It reads every partition of the topic by assignment, so it joins no
consumer group (the scorer's or one of its own) and commits nothing.
"""

import logging
import sys
import threading
from typing import IO, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from scorer.clients import client_logger, kafka_common, settings_checked_by_librdkafka
from scorer.config import Config
from scorer.confluent_wire import topic_codec
from scorer.errors import BrokerError, InvalidRecord
from scorer.publish import MQL_CROSSED, SCORE_CHANGED
from scorer.registry import RegistryClient
from scorer.wire import Codec, JsonCodec, SchemaCatalog

log = logging.getLogger(__name__)

POLL_S = 0.5
BATCH = 500
METADATA_TIMEOUT_S = 10.0
OUTPUT_TYPES = (SCORE_CHANGED, MQL_CROSSED)


def watch(
    config: Config,
    stop: threading.Event,
    out: IO[str] | None = None,
    from_beginning: bool = False,
    mql_only: bool = False,
) -> int:
    """Print output events until `stop` is set; returns how many were printed."""
    out = out if out is not None else sys.stdout
    codec = _output_codec(config)
    printer = JsonCodec()
    consumer = _consumer(config)
    wanted = (MQL_CROSSED,) if mql_only else OUTPUT_TYPES

    printed = 0
    try:
        consumer.assign(
            _partitions(consumer, config.topics.output.name, from_beginning)
        )
        while not stop.is_set():
            for message in consumer.consume(BATCH, POLL_S):
                event = _event(message, codec)
                if event is None or event["type"] not in wanted:
                    continue
                print(printer.encode(event).decode("utf-8"), file=out, flush=True)
                printed += 1
    finally:
        consumer.close()
    return printed


def _consumer(config: Config) -> Consumer:
    # The group id is required by the client but never used: assign(), no
    # commits, so the broker keeps no group for it.
    settings = {
        **kafka_common(config),
        "group.id": f"{config.kafka.group_id}-watch",
        "enable.auto.commit": False,
    }
    with settings_checked_by_librdkafka(config.kafka):
        return Consumer(settings, logger=client_logger("watch"))


def _partitions(
    consumer: Consumer, topic: str, from_beginning: bool
) -> list[TopicPartition]:
    try:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        message = f"cannot read the topics of the broker: {exc.args[0].str()}"
        raise BrokerError(message) from exc

    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise BrokerError(f"the output topic {topic} does not exist on the broker")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    return [TopicPartition(topic, p, start) for p in sorted(found.partitions)]


def _output_codec(config: Config) -> Codec:
    registry = None
    if config.schema_registry is not None:
        registry = RegistryClient.from_config(config.schema_registry)
    return topic_codec(config.topics.output, SchemaCatalog.load(), registry)


def _event(message: Message, codec: Codec) -> dict[str, Any] | None:
    """The output event in `message`, or None (said on stderr if not one)."""
    if message.error() is not None:
        return None
    value = message.value()
    if value is None:
        _skip(message, "tombstone", "no value")
        return None
    try:
        event = codec.decode(value)
    except InvalidRecord as exc:
        _skip(message, exc.reason, exc.message)
        return None
    if event.get("type") not in OUTPUT_TYPES or not _is_number(event.get("score")):
        _skip(message, "not_an_output", "not a score_changed or mql_crossed event")
        return None
    return event


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _skip(message: Message, reason: str, detail: str) -> None:
    where = f"{message.topic()}/{message.partition()}@{message.offset()}"
    log.warning("skipped %s: %s: %s", where, reason, detail)
