"""Running a real scorer against the test servers, and reading what it says."""

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer

from scorer.config import Config, default_config_path, parse_config
from scorer.metrics import Metrics
from scorer.pipeline import ScorerPipeline
from scorer.service import build_pipeline
from scorer.wire import SCORE_SCHEMA, Codec, make_codec

WAIT_S = 60.0


def make_config(
    bootstrap: str,
    redis_url: str,
    topics: Mapping[str, Any],
    scoring: Mapping[str, Any] | None = None,
    **sections: Any,
) -> Config:
    """The default config pointed at the test servers and topics."""
    raw = yaml.safe_load(default_config_path().read_text())
    if scoring is not None:
        raw["scoring"] = copy.deepcopy(dict(scoring))
    raw["kafka"] = {
        "bootstrap_servers": bootstrap,
        "group_id": f"test-{uuid.uuid4().hex[:8]}",
    }
    raw["redis"] = {"url": redis_url, "key_prefix": f"t{uuid.uuid4().hex[:6]}"}
    raw["topics"] = dict(topics)
    raw["metrics"] = {"port": None}
    raw["pipeline"] = {"batch_size": 500, "batch_timeout_ms": 20}
    for name, value in sections.items():
        raw[name] = value
    return parse_config(raw)


@contextmanager
def running_scorer(
    config: Config, metrics: Metrics | None = None
) -> Iterator[ScorerPipeline]:
    """A scorer consuming in a background thread until the block ends."""
    pipeline = build_pipeline(config, metrics)
    stop = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            pipeline.run(stop)
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)

    thread = threading.Thread(target=work, name="scorer", daemon=True)
    thread.start()
    try:
        yield pipeline
    finally:
        stop.set()
        thread.join(WAIT_S)
    if failure:
        raise failure[0]
    assert not thread.is_alive(), "the scorer did not stop"


def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Mapping[str, Any] | None],
    codec: Codec | None,
    keys: Sequence[str] | None = None,
    raw_values: Sequence[bytes | None] | None = None,
) -> None:
    """Produce records (encoded by `codec`) or raw values, keyed by lead id."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    values = (
        raw_values
        if raw_values is not None
        else [None if r is None or codec is None else codec.encode(r) for r in records]
    )
    for index, value in enumerate(values):
        key = keys[index] if keys is not None else _lead(records, index)
        producer.produce(topic, value=value, key=key.encode() if key else None)
        if index % 1000 == 0:
            producer.poll(0)
    assert producer.flush(WAIT_S) == 0


def _lead(records: Sequence[Mapping[str, Any] | None], index: int) -> str | None:
    record = records[index] if index < len(records) else None
    return None if record is None else str(record.get("lead_id") or "")


class TopicReader:
    """Reads a topic from the beginning; decodes with `codec` if given."""

    def __init__(self, bootstrap: str, topic: str, codec: Codec | None) -> None:
        self.codec = codec
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([topic])
        self.messages: list[Any] = []

    def read_until(
        self, done: Callable[[list[Any]], bool], timeout_s: float = WAIT_S
    ) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while not done(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out with {len(self.messages)} messages")
            for message in self.consumer.consume(1000, 0.2):
                if message.error() is None:
                    self.messages.append(message)
        return self.messages

    def read_quiet(self, quiet_s: float = 2.0) -> list[Any]:
        """Read until nothing new arrives for `quiet_s`."""
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            batch = self.consumer.consume(1000, 0.2)
            good = [m for m in batch if m.error() is None]
            if good:
                self.messages.extend(good)
                last = time.monotonic()
        return self.messages

    def decoded(self) -> list[dict[str, Any]]:
        assert self.codec is not None
        return [self.codec.decode(m.value()) for m in self.messages]

    def close(self) -> None:
        self.consumer.close()


def output_codec(config: Config) -> Codec:
    return make_codec(config.topics.output.format, schema_name=SCORE_SCHEMA)


def java_partition(key: bytes, partitions: int) -> int:
    """The partition of Kafka's Java producer: murmur2 of the key, made positive."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """MurmurHash2, 32 bits, with the seed the Java client uses."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = 0x9747B28C ^ len(data)
    whole = len(data) - len(data) % 4

    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little") * m & mask
        k = (k ^ k >> 24) * m & mask
        h = (h * m & mask) ^ k

    tail = data[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = h * m & mask

    h = (h ^ h >> 13) * m & mask
    return h ^ h >> 15
