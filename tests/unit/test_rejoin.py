"""A consumer cut off from its group after a loss is replaced.

librdkafka's consumer has been seen, after a broker restart, to lose its
partitions and then queue its requests to the group coordinator for good:
no assignment ever followed, and the scorer sat idle while its input grew.
"""

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from test_pipeline_unencodable import EVENTS, Broker, sample

from scorer.assignment import Assignment, Reachability, Rejoin
from scorer.config import default_config_path, parse_config
from scorer.lead import MemoryStore, Params
from scorer.metrics import Metrics
from scorer.pipeline import ScorerPipeline
from scorer.scoring import Scorer

P0, P1 = TopicPartition(EVENTS, 0), TopicPartition(EVENTS, 1)
# Short, so the tests wait little; the loop turns many times meanwhile.
REJOIN_AFTER_S = 0.2
WAIT_S = 10.0

Turn = Callable[["Member"], None]


class Member:
    """A consumer of the group: each consume() plays the next scripted turn.

    The callbacks given to subscribe() are called from consume() and
    close(), in the consuming thread, as librdkafka calls them.
    """

    def __init__(self, name: str, turns: list[Turn], stop: threading.Event) -> None:
        self.name = name
        self.turns = turns
        self.stop = stop
        self.subscribed: list[str] = []
        self.callbacks: dict[str, Any] = {}
        self.closed = threading.Event()
        self.on_close: Turn = lambda _member: None

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics
        self.callbacks = callbacks

    def list_topics(self, timeout: float) -> Any:
        raise KafkaException("no broker here")

    def consume(self, _count: int, _timeout_s: float) -> list[Any]:
        if self.turns:
            self.turns.pop(0)(self)
        else:
            self.stop.set()  # out of script: the test is over
        return []

    def commit(self, asynchronous: bool = True) -> None:
        return None

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        raise KafkaException("no positions here")  # the lag report skips a turn

    def close(self) -> None:
        self.on_close(self)
        self.closed.set()

    def call(self, kind: str, partitions: list[TopicPartition]) -> None:
        self.callbacks[f"on_{kind}"](self, partitions)


def assign(*partitions: TopicPartition) -> Turn:
    return lambda member: member.call("assign", list(partitions))


def lose(*partitions: TopicPartition) -> Turn:
    return lambda member: member.call("lost", list(partitions))


def idle_for(seconds: float) -> list[Turn]:
    """Turns that return nothing until `seconds` have passed."""
    until = time.monotonic() + seconds

    def idle(member: Member) -> None:
        if time.monotonic() < until:
            member.turns.insert(0, idle)

    return [idle]


def stop(member: Member) -> None:
    member.stop.set()


@pytest.fixture
def stopping() -> threading.Event:
    return threading.Event()


@pytest.fixture
def made() -> list[Member]:
    """The consumers the pipeline makes when it replaces one, in order."""
    return []


def pipeline_with(
    first: Member,
    replacements: list[Member],
    made: list[Member],
    reach: Reachability | None = None,
) -> ScorerPipeline:
    raw = yaml.safe_load(default_config_path().read_text())
    raw["topics"]["events"] = [{"name": EVENTS, "format": "json"}]
    config = parse_config(raw)
    scorer = Scorer(config.scoring, MemoryStore(Params.of(config.scoring)))

    def make_consumer() -> Any:
        member = replacements.pop(0)
        made.append(member)
        return member

    producer: Any = Broker()
    consumer: Any = first
    rejoin = Rejoin(make_consumer, REJOIN_AFTER_S, reach)
    return ScorerPipeline(
        config, scorer, consumer, lambda: producer, Metrics(), rejoin=rejoin
    )


def test_a_consumer_given_nothing_after_a_loss_is_replaced_by_one_that_subscribes(
    stopping: threading.Event, made: list[Member]
) -> None:
    old = Member("old", [assign(P0, P1), lose(P0, P1), *idle_for(1.0)], stopping)
    new = Member("new", [assign(P0), *idle_for(0.1), stop], stopping)
    # Closing, the old consumer finally hears from the coordinator: too late.
    old.on_close = lambda member: member.call("assign", [P1])
    pipeline = pipeline_with(old, [new], made)

    pipeline.run(stopping)

    assert made == [new]
    assert EVENTS in new.subscribed and new.subscribed == old.subscribed
    assert old.closed.wait(WAIT_S)
    assert pipeline.consumer is new and pipeline.delivery.consumer is new
    assert pipeline.assignment == {(EVENTS, 0)}
    assert sample(pipeline.metrics, "scorer_consumer_replacements_total") == 1
    assert sample(pipeline.metrics, "scorer_assigned_partitions") == 1


def test_an_empty_assignment_after_a_loss_keeps_the_consumer(
    stopping: threading.Event, made: list[Member]
) -> None:
    # A spare instance: its partitions went to others when it rejoined.
    turns = [assign(P0), lose(P0), assign(), *idle_for(3 * REJOIN_AFTER_S), stop]
    pipeline = pipeline_with(Member("only", turns, stopping), [], made)

    pipeline.run(stopping)

    assert made == []
    assert pipeline.assignment == set()
    assert sample(pipeline.metrics, "scorer_consumer_replacements_total") == 0


def test_a_consumer_that_never_lost_its_partitions_is_kept(
    stopping: threading.Event, made: list[Member]
) -> None:
    turns = [assign(P0), *idle_for(3 * REJOIN_AFTER_S), stop]
    pipeline = pipeline_with(Member("only", turns, stopping), [], made)

    pipeline.run(stopping)

    assert made == []
    assert pipeline.assignment == {(EVENTS, 0)}


def test_a_loss_ends_with_any_assignment_and_a_new_loss_starts_again() -> None:
    consumer: Any = Member("only", [], threading.Event())
    owned = Assignment(consumer, Metrics())

    owned.on_assign(consumer, [P0])
    before = owned.cut_off_s(time.monotonic())
    owned.on_lost(consumer, [P0])
    lost_at = time.monotonic()
    during = owned.cut_off_s(lost_at + 5.0)
    owned.on_assign(consumer, [])
    after = owned.cut_off_s(lost_at + 5.0)
    owned.on_lost(consumer, [])
    again = owned.cut_off_s(lost_at + 5.0)

    assert before is None and after is None
    assert during is not None and during >= 5.0
    assert again is not None and again < during


def test_callbacks_of_a_replaced_consumer_change_nothing() -> None:
    old: Any = Member("old", [], threading.Event())
    new: Any = Member("new", [], threading.Event())
    revoked: list[str] = []
    owned = Assignment(old, Metrics(), before_revoke=lambda: revoked.append("x"))
    owned.on_assign(old, [P0])
    owned.on_lost(old, [P0])

    owned.replace_consumer(new)
    owned.on_assign(old, [P1])
    owned.on_revoke(old, [P1])
    owned.on_lost(old, [P1])
    owned.on_assign(new, [P0])

    assert owned.owned == {(EVENTS, 0)}
    assert owned.cut_off_s(time.monotonic()) is None
    assert revoked == []


def brokers_away_for(seconds: float, reach: Reachability) -> list[Turn]:
    """Turns in which the consumer reports the brokers out of reach."""
    until = time.monotonic() + seconds

    def away(member: Member) -> None:
        reach.note(KafkaError(KafkaError._TRANSPORT))
        if time.monotonic() < until:
            member.turns.insert(0, away)

    return [away]


def test_the_wait_starts_over_while_the_brokers_are_out_of_reach(
    stopping: threading.Event, made: list[Member]
) -> None:
    # A broker outage: the rejoin can only follow once a broker answers.
    reach = Reachability()
    outage = brokers_away_for(3 * REJOIN_AFTER_S, reach)
    turns = [assign(P0), lose(P0), *outage, stop]
    pipeline = pipeline_with(Member("only", turns, stopping), [], made, reach)

    pipeline.run(stopping)

    assert made == []


def test_after_the_outage_the_wait_runs_out_and_the_consumer_is_replaced(
    stopping: threading.Event, made: list[Member]
) -> None:
    reach = Reachability()
    outage = brokers_away_for(2 * REJOIN_AFTER_S, reach)
    old = Member("old", [assign(P0), lose(P0), *outage, *idle_for(1.0)], stopping)
    new = Member("new", [assign(P0), stop], stopping)
    pipeline = pipeline_with(old, [new], made, reach)

    pipeline.run(stopping)

    assert made == [new]


def test_only_errors_of_brokers_out_of_reach_restart_the_wait() -> None:
    reach = Reachability()
    rejoin = Rejoin(
        lambda: None,  # type: ignore[arg-type,return-value]
        after_s=10.0,
        reach=reach,
    )
    now = time.monotonic()
    due_before = rejoin.due(60.0, now)

    reach.note(KafkaError(KafkaError._MSG_TIMED_OUT))
    due_after_other = rejoin.due(60.0, time.monotonic())
    reach.note(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    noted = time.monotonic()

    assert due_before and due_after_other
    assert not rejoin.due(60.0, noted + 9.0)
    assert rejoin.due(60.0, noted + 10.5)
    assert not rejoin.due(None, noted + 60.0)
    assert not rejoin.due(5.0, noted + 60.0)
