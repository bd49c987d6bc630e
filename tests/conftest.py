"""Fixtures that give tests real Kafka and Redis servers.

A server starts only when a test asks for its fixture, and then once per
session, so `pytest tests/unit` starts nothing. Where KAFKA_BOOTSTRAP_SERVERS
or REDIS_URL is set, tests use that server instead; it must be a disposable
one, since `redis_client` flushes its database. Otherwise the sandbox starts
the server as a child process (see scorer.sandbox).

Any test that uses these fixtures is marked `integration`, so
`-m "not integration"` leaves out every test that needs a server.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest
import redis

from scorer.sandbox.kafka import KafkaBroker, create_topics, delete_topics
from scorer.sandbox.redis import RedisServer

logger = logging.getLogger(__name__)

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
REDIS_ENV = "REDIS_URL"
SERVER_FIXTURES = frozenset(
    {"kafka_bootstrap", "redis_url", "redis_client", "fresh_topics"}
)


class TopicFactory(Protocol):
    """Creates topics named `<prefix>-<random hex>`; returns their names."""

    def __call__(
        self, *prefixes: str, partitions: int = 3, compacted: bool = False
    ) -> list[str]: ...


# First, so that `-m` deselection, which runs in the same hook, sees the mark.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses_server = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_server:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """bootstrap.servers of a Kafka cluster shared by the whole session."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        yield external
        return

    with KafkaBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server shared by the whole session."""
    external = os.environ.get(REDIS_ENV)
    if external:
        yield external
        return

    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an empty database, emptied again after the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def fresh_topics(kafka_bootstrap: str) -> Iterator[TopicFactory]:
    """Make topics that no other test uses; they are deleted afterwards."""
    created: list[str] = []

    def make(*prefixes: str, partitions: int = 3, compacted: bool = False) -> list[str]:
        names = [f"{prefix}-{uuid.uuid4().hex[:12]}" for prefix in prefixes]
        create_topics(
            kafka_bootstrap,
            dict.fromkeys(names, partitions),
            compacted=names if compacted else (),
        )
        created.extend(names)
        return names

    yield make

    delete_topics(kafka_bootstrap, created)
