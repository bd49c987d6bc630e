"""`scorer watch`: the output topic's events as JSON lines, as they come.

The scorer writes its outputs in the output topic's format (Avro by
default), which a console consumer shows as bytes. This reads them as the
scorer's downstream consumers would and prints each event as one JSON line
on stdout: `score_changed` with its reason, `mql_crossed` with its
direction. It joins no consumer group of the scorer's and commits nothing.
"""

import sys
import threading
import uuid
from typing import IO

from confluent_kafka import Consumer, Message

from scorer.config import Config
from scorer.confluent_wire import topic_codec
from scorer.errors import InvalidRecord
from scorer.publish import MQL_CROSSED
from scorer.registry import RegistryClient
from scorer.service import kafka_common
from scorer.wire import Codec, JsonCodec, SchemaCatalog

POLL_S = 0.5
BATCH = 500


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
    consumer = Consumer(_settings(config, from_beginning))
    consumer.subscribe([config.topics.output.name])

    printed = 0
    try:
        while not stop.is_set():
            for message in consumer.consume(BATCH, POLL_S):
                value = message.value()
                if message.error() is not None or value is None:
                    continue
                try:
                    event = codec.decode(value)
                except InvalidRecord as exc:
                    # Not the scorer's: say where, not what (it may be anything).
                    print(_unreadable(message, exc), file=sys.stderr)
                    continue
                if mql_only and event.get("type") != MQL_CROSSED:
                    continue
                print(printer.encode(event).decode("utf-8"), file=out, flush=True)
                printed += 1
    finally:
        consumer.close()
    return printed


def _output_codec(config: Config) -> Codec:
    registry = None
    if config.schema_registry is not None:
        registry = RegistryClient.from_config(config.schema_registry)
    return topic_codec(config.topics.output, SchemaCatalog.load(), registry)


def _settings(config: Config, from_beginning: bool) -> dict[str, object]:
    # A group of its own each time, so the scorer's offsets and members
    # are not touched and every run starts where it is asked to.
    return {
        **kafka_common(config),
        "group.id": f"{config.kafka.group_id}-watch-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    }


def _unreadable(message: Message, exc: InvalidRecord) -> str:
    where = f"{message.topic()}/{message.partition()}@{message.offset()}"
    return f"{where}: {exc.reason}: {exc.message}"
