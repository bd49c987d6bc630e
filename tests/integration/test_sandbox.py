"""The sandbox runs real servers, and they come back from the faults that
later tests inject: a stop, a crash, a pause."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer
from redis.backoff import NoBackoff
from redis.retry import Retry

from scorer.sandbox.kafka import KafkaBroker
from scorer.sandbox.redis import RedisServer

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT_S = 30.0  # a produce right after a broker restart may wait a bit
CONSUME_TIMEOUT_S = 30.0  # the first group join creates __consumer_offsets


def produce(bootstrap_servers: str, topic: str, values: list[bytes]) -> None:
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error)

    producer = Producer({"bootstrap.servers": bootstrap_servers})
    for value in values:
        producer.produce(topic, value=value, on_delivery=on_delivery)

    assert producer.flush(DELIVERY_TIMEOUT_S) == 0, "messages left undelivered"
    assert errors == []


def consume(bootstrap_servers: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"sandbox-test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            values.append(message.value() or b"")
    finally:
        consumer.close()
    return values


def test_message_goes_through_the_broker(
    kafka_bootstrap: str, fresh_topics: Callable[..., list[str]]
) -> None:
    (topic,) = fresh_topics("sandbox", partitions=1)

    produce(kafka_bootstrap, topic, [b"lead-1 visited pricing"])

    assert consume(kafka_bootstrap, topic, 1) == [b"lead-1 visited pricing"]


def test_redis_stores_and_returns_a_value(redis_client: redis.Redis) -> None:
    redis_client.set("lead:{1}:score", "42")

    assert redis_client.get("lead:{1}:score") == b"42"


def test_redis_data_survives_a_restart() -> None:
    with RedisServer() as server:
        port = server.port
        with server.client() as client:
            client.set("lead:{1}:score", "42")

        server.restart()

        assert server.port == port
        with server.client() as client:
            assert client.get("lead:{1}:score") == b"42"


def test_redis_data_written_before_a_crash_survives() -> None:
    # With fsync on every write, nothing acknowledged may be lost to SIGKILL.
    with RedisServer(extra_args=["--appendfsync", "always"]) as server:
        with server.client() as client:
            client.set("lead:{1}:score", "42")

        server.kill()
        server.restart()

        with server.client() as client:
            assert client.get("lead:{1}:score") == b"42"


def test_paused_redis_answers_only_after_resume() -> None:
    with RedisServer() as server:
        # No retries: redis-py retries a timed-out command with backoff by default.
        client = redis.Redis(
            host="127.0.0.1",
            port=server.port,
            socket_timeout=0.3,
            retry=Retry(NoBackoff(), retries=0),
        )
        server.pause()

        with pytest.raises(redis.TimeoutError):
            client.ping()

        server.resume()
        assert client.ping()
        client.close()


def test_broker_restart_keeps_its_address_and_topics() -> None:
    with KafkaBroker() as broker:
        topic = f"restart-{uuid.uuid4().hex[:12]}"
        broker.create_topics({topic: 1})
        produce(broker.bootstrap_servers, topic, [b"before"])
        address = broker.bootstrap_servers

        broker.restart()

        assert broker.bootstrap_servers == address
        produce(broker.bootstrap_servers, topic, [b"after"])
        assert consume(broker.bootstrap_servers, topic, 2) == [b"before", b"after"]
