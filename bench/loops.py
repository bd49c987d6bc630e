"""The two loops the scorer is compared with, each run as its own process.

    python bench/loops.py bare CONFIG
    python bench/loops.py naive CONFIG
    python bench/loops.py naive-ack CONFIG

Both read the same config as `scorer run` (topics, batch size, client
settings, Redis) and stop on SIGTERM.

- bare: the scorer's batch loop without Redis and without scoring: consume a
  batch, decode every record (Avro), encode it again with its own schema,
  produce one output per input, wait for the acks, commit. The ceiling any
  Kafka-to-Kafka Python loop with these clients reaches here.
- naive: one record at a time: one poll, one Redis call (the real Lua script
  through `RedisStore` with one update per call), one produce of each output
  event. Produces are not flushed per event; offsets are stored after each
  produce and auto-committed every second, so a crash may lose outputs.
- naive-ack: the naive loop with the scorer's delivery guarantee: it waits
  for each record's outputs to be acknowledged before storing its offset.
"""

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from scorer.clients import consumer_settings, output_producer_settings, redis_client
from scorer.config import Config, load_config
from scorer.events import TimeBounds, parse_record
from scorer.lead import Params
from scorer.scoring import Scorer
from scorer.service import tune_garbage_collector
from scorer.state import RedisStore
from scorer.wire import SCORE_SCHEMA, Codec, SchemaCatalog, make_codec

log = logging.getLogger("bench.loops")

POLL_TIMEOUT_S = 0.1
FLUSH_TIMEOUT_S = 30.0
AUTO_COMMIT_INTERVAL_MS = 1000


def main(argv: list[str]) -> int:
    kind, config_path = argv
    config = load_config(Path(config_path))
    stop = _stop_on_sigterm()
    # The collector settings of `scorer run`, so that only the loops differ.
    tune_garbage_collector()
    if kind == "bare":
        bare(config, stop)
    elif kind in ("naive", "naive-ack"):
        naive(config, stop, wait_for_acks=kind == "naive-ack")
    else:
        raise SystemExit(f"unknown loop {kind!r}; use bare, naive or naive-ack")
    return 0


def bare(config: Config, stop: threading.Event) -> None:
    consumer = Consumer(consumer_settings(config))
    producer = Producer(output_producer_settings(config))
    codecs = _input_codecs(config)
    consumer.subscribe(list(codecs))
    output = config.topics.output.name
    size = config.pipeline.batch_size
    timeout_s = config.pipeline.batch_timeout_ms / 1000

    while not stop.is_set():
        messages = [m for m in consumer.consume(size, timeout_s) if m.error() is None]
        if not messages:
            continue

        for message in messages:
            codec = codecs[str(message.topic())]
            record = codec.decode(_value(message))
            value = codec.encode(record)
            producer.produce(output, value=value, key=message.key())
        producer.flush(FLUSH_TIMEOUT_S)

        consumer.store_offsets(offsets=_next_offsets(messages))
        consumer.commit(asynchronous=True)
    _close(consumer, producer)


def naive(config: Config, stop: threading.Event, wait_for_acks: bool) -> None:
    settings = consumer_settings(config)
    settings["enable.auto.commit"] = True
    settings["auto.commit.interval.ms"] = AUTO_COMMIT_INTERVAL_MS
    consumer = Consumer(settings)
    producer = Producer(output_producer_settings(config))
    codecs = _input_codecs(config)
    consumer.subscribe(list(codecs))
    scorer = _one_at_a_time_scorer(config)
    output = config.topics.output
    output_codec = make_codec(output.format, schema_name=SCORE_SCHEMA)
    bounds = TimeBounds(max_future_ms=config.pipeline.max_future)

    while not stop.is_set():
        message = consumer.poll(POLL_TIMEOUT_S)
        if message is None or message.error() is not None:
            continue

        record = codecs[str(message.topic())].decode(_value(message))
        (result,) = scorer.score([parse_record(record, bounds)])
        for event in result.outputs:
            value = output_codec.encode(event)
            headers: list[tuple[str, str | bytes | None]] = [
                ("type", str(event["type"]).encode())
            ]
            producer.produce(output.name, value, message.key(), headers=headers)
        if wait_for_acks:
            producer.flush(FLUSH_TIMEOUT_S)
        else:
            producer.poll(0)

        consumer.store_offsets(message=message)
    _close(consumer, producer)


def _one_at_a_time_scorer(config: Config) -> Scorer:
    store = RedisStore(
        redis_client(config),
        Params.of(config.scoring),
        key_prefix=config.redis.key_prefix,
        ops_per_call=1,
    )
    store.load_script()
    return Scorer(config.scoring, store)


def _input_codecs(config: Config) -> dict[str, Codec]:
    topics = [*config.topics.events]
    if config.topics.firmographics is not None:
        topics.append(config.topics.firmographics)
    catalog = SchemaCatalog.load()
    return {topic.name: make_codec(topic.format, catalog=catalog) for topic in topics}


def _value(message: Message) -> bytes:
    value = message.value()
    assert isinstance(value, bytes), "the benchmark produces no tombstones"
    return value


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        place = (str(message.topic()), int(message.partition() or 0))
        highest[place] = max(highest.get(place, -1), int(message.offset() or 0))
    return [TopicPartition(t, p, offset + 1) for (t, p), offset in highest.items()]


def _close(consumer: Consumer, producer: Producer) -> None:
    producer.flush(FLUSH_TIMEOUT_S)
    consumer.close()


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
