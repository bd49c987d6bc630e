"""`scorer produce`: JSON-lines records onto Kafka, keyed by lead id.

Each line is one JSON object (an event or a firmographic record, as
`scorer import-access-log` and `scorer replay` read them). Its topic is, in
this order: the topic routed for its `type` (``--route TYPE=TOPIC``), the
one ``--topic``, or the config's: the firmographics topic for firmographic
records, the event topic whose ``types`` name the record's type, or the only
event topic when there is one. The value is written in the
topic's format from the config (JSON when the topic is not in the config, or
``--format`` for all). A `confluent_avro` topic gets each record type's
schema registered (or looked up) under its subject, as the scorer does for
its output topic.

Each line is validated first, as `scorer replay` and the scorer validate it:
a record the scorer would dead-letter is not sent, on any topic, but reported
with the scorer's reason and field. That includes ``wrong_topic``: an event
routed to the config's firmographics topic, or a firmographic record routed
to one of its event topics. A valid line goes to a JSON topic as written,
byte for byte; an Avro topic gets its normalised values, as the scorer reads
them (``"employees": 500.0`` as 500, fields the scorer does not read left
out). To feed the dead-letter topic on purpose, use another producer.

A line that cannot be sent is reported as ``file:line: reason field=F:
message`` on stderr (not its content: it may hold personal data) and the rest
go on: a record the scorer would refuse, one with no route, a message over the
producer's ``message.max.bytes`` (reason ``too_large``), or one the broker did
not acknowledge (``delivery_failed``). The summary counts as produced only
what the broker acknowledged.
"""

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from scorer.config import Config, Topic, WireFormat, topic_name_problem
from scorer.confluent_wire import topic_codec
from scorer.delivery import send
from scorer.errors import BrokerError, ConfigError, InvalidRecord
from scorer.events import (
    ACTIVITY_TYPES,
    FIRMOGRAPHICS_TYPE,
    TimeBounds,
    record_fields,
    wrong_topic,
)
from scorer.registry import RegistryClient, RegistryError
from scorer.replay import Line, parse_line
from scorer.wire import INPUT_SCHEMAS, Codec, JsonCodec, SchemaCatalog, make_codec

Format = WireFormat
CodecOf = Callable[[str, Format, str], Codec]
"""The codec for records of a type (third) on a topic (first) in a format."""
# How long the end of a run waits for the broker to acknowledge the rest.
FLUSH_TIMEOUT_S = 60.0
POLL_EVERY_LINES = 1000
# Refusals that come from the command's set-up (routes, the registry), not
# from the line: they fail the run. A record of one kind routed to a topic
# of the other (wrong_topic) was routed there by the config or --route.
SET_UP_REASONS = ("no_route", "wrong_topic", "schema_registry")
# The record types a --route may name: what the scorer's parse_record accepts.
ROUTABLE_TYPES = (*ACTIVITY_TYPES, FIRMOGRAPHICS_TYPE)


@dataclass(frozen=True, slots=True)
class Routing:
    """Which topic a record goes to, and in which format."""

    by_type: Mapping[str, str]
    topic: str | None
    formats: Mapping[str, Format]
    default_format: Format = "json"
    configured: Mapping[str, Format] = field(default_factory=dict)
    """The config's formats, also when --format overrides them."""
    event_topics: frozenset[str] = frozenset()
    firmographics_topic: str | None = None
    """The topics whose role the config names; others take any record."""

    @classmethod
    def of(
        cls,
        config: Config | None,
        routes: Mapping[str, str],
        topic: str | None,
        fmt: Format | None,
    ) -> "Routing":
        # --topic stands for the event topics only: firmographics on an event
        # topic would be dead-lettered as wrong_topic by the scorer.
        by_type = _config_routes(config)
        if topic is not None:
            by_type = {k: v for k, v in by_type.items() if k == "firmographics"}
        by_type.update(routes)
        if config is None:
            return cls(by_type, topic, {}, fmt or "json")

        topics = config.topics
        firmographics = topics.firmographics
        listed = [*topics.events, topics.output]
        if firmographics is not None:
            listed.append(firmographics)
        formats = {t.name: t.format for t in listed}
        return cls(
            by_type,
            topic,
            {} if fmt is not None else formats,
            fmt or "json",
            configured=formats,
            event_topics=frozenset(t.name for t in topics.events),
            firmographics_topic=firmographics.name if firmographics else None,
        )

    def topic_for(self, record: Mapping[str, Any]) -> str:
        kind = record.get("type")
        chosen = self.by_type.get(kind) if isinstance(kind, str) else None
        chosen = chosen or self.topic
        if chosen is None:
            # A type value may hold anything (an e-mail address): name known
            # types only, as parse_record does.
            shown = repr(kind) if kind in ROUTABLE_TYPES else "(not a type name)"
            raise InvalidRecord(
                "no_route",
                f"no topic for type {shown}: the config has several event "
                "topics; give --route TYPE=TOPIC or --topic",
                "type",
            )
        self._check_role(chosen, kind == FIRMOGRAPHICS_TYPE)
        return chosen

    def _check_role(self, topic: str, is_firmographics: bool) -> None:
        # The scorer checks each record it consumes the same way (see
        # pipeline's _item) and dead-letters a mismatch as wrong_topic.
        if topic == self.firmographics_topic and not is_firmographics:
            raise wrong_topic(topic, carries_firmographics=True)
        if topic in self.event_topics and is_firmographics:
            raise wrong_topic(topic, carries_firmographics=False)

    def format_of(self, topic: str) -> Format:
        return self.formats.get(topic, self.default_format)


@dataclass(slots=True)
class ProduceStats:
    """`produced` counts only what the broker acknowledged, by topic."""

    lines: int = 0
    produced: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    failed: int = 0

    @property
    def succeeded(self) -> bool:
        """Every delivery acknowledged, every record given a topic and schema,
        and something sent if lines were read.

        Lines the scorer would dead-letter are reported and skipped: the data
        is at fault. A record without a route or a schema is the run's set-up
        at fault, and every record of its type fails alike: a backfill that
        sent the firmographics and none of the events must not look done.
        """
        nothing_sent = self.lines > 0 and not self.produced
        unrouted = any(self.bad[reason] for reason in SET_UP_REASONS)
        return not self.failed and not nothing_sent and not unrouted

    def summary(self) -> str:
        parts = [f"lines={self.lines}", f"produced={sum(self.produced.values())}"]
        parts += [f"topic.{name}={n}" for name, n in sorted(self.produced.items())]
        parts.append(f"bad={sum(self.bad.values())}")
        parts += [f"bad.{reason}={n}" for reason, n in sorted(self.bad.items())]
        parts.append(f"delivery_failed={self.failed}")
        return "produce: " + " ".join(parts)


class Sender:
    """Produces lines to Kafka and counts what became of them."""

    def __init__(
        self,
        producer: Producer,
        routing: Routing,
        errors: IO[str] | None = None,
        codec_of: CodecOf | None = None,
        bounds: TimeBounds | None = None,
    ) -> None:
        self.producer = producer
        self.routing = routing
        self.bounds = bounds if bounds is not None else TimeBounds()
        self.errors = errors if errors is not None else sys.stderr
        self.stats = ProduceStats()
        self._codec_of = codec_of if codec_of is not None else codecs_for(None)
        # A codec per topic, format and type, or why the registry refused it.
        self._codecs: dict[tuple[str, Format, str], Codec | InvalidRecord] = {}
        self._json = JsonCodec()
        self._warned: set[str] = set()
        # Where each message awaiting its acknowledgement came from.
        self._pending: dict[str, None] = {}  # in the order produced

    def send(self, lines: Iterable[Line]) -> ProduceStats:
        for line in lines:
            self._send_line(line)
            if self.stats.lines % POLL_EVERY_LINES == 0:
                self.producer.poll(0)
        self.producer.flush(FLUSH_TIMEOUT_S)

        # Lines the broker has not answered for by now are failures too, and
        # are named like the others (librdkafka would go on trying for longer).
        for where in self._pending:
            self.stats.failed += 1
            print(
                f"{where}: delivery_failed: not acknowledged within "
                f"{FLUSH_TIMEOUT_S:g} s (is the broker reachable?)",
                file=self.errors,
            )
        self._pending.clear()
        return self.stats

    def _send_line(self, line: Line) -> None:
        self.stats.lines += 1
        text = line.text.strip()
        try:
            topic, key, value = self._message(text)
            self._produce(topic, key, value, _where(line))
        except InvalidRecord as exc:
            self._reject(line, exc)

    def _message(self, text: bytes) -> tuple[str, bytes, bytes]:
        # What the scorer would dead-letter is reported here, with its reason.
        record = parse_line(text, self.bounds, self._json)
        values = record_fields(record)

        topic = self.routing.topic_for(values)
        fmt = self.routing.format_of(topic)
        self._warn_of_format(topic, fmt)
        # JSON goes out as written; Avro carries the values as the scorer
        # reads them, so that what it accepts always fits the schema.
        if fmt == "json":
            value = text
        else:
            value = self._codec(topic, fmt, str(values["type"])).encode(values)
        return topic, record.lead_id.encode(), value

    def _warn_of_format(self, topic: str, fmt: Format) -> None:
        """Once per topic: --format writes what the config's scorer refuses."""
        configured = self.routing.configured.get(topic)
        if configured in (None, fmt) or topic in self._warned:
            return
        self._warned.add(topic)
        print(
            f"produce: warning: topic {topic} is {configured} in the config; "
            f"writing {fmt} as --format says, which readers of that config "
            "cannot read",
            file=self.errors,
        )

    def _produce(self, topic: str, key: bytes, value: bytes, where: str) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            self._pending.pop(where, None)
            self._delivered(where, topic, error)

        try:
            send(self.producer, topic, value, key, on_delivery=delivered)
        except KafkaException as exc:
            raise _refused(exc, topic, len(key) + len(value)) from exc
        self._pending[where] = None

    def _delivered(self, where: str, topic: str, error: KafkaError | None) -> None:
        if error is None:
            self.stats.produced[topic] += 1
            return
        self.stats.failed += 1
        print(
            f"{where}: delivery_failed: {error.name()}: {error.str()}",
            file=self.errors,
        )

    def _codec(self, topic: str, fmt: Format, kind: str) -> Codec:
        # A Confluent frame names the schema id of the topic's subject;
        # the other formats write any topic and type alike.
        key = (topic, fmt, kind) if fmt == "confluent_avro" else ("", fmt, "")
        if key not in self._codecs:
            try:
                self._codecs[key] = self._codec_of(topic, fmt, kind)
            except RegistryError as exc:
                # Every line of this topic and type would fail alike: the
                # refusal is kept, and the lines are reported, not the run.
                self._codecs[key] = InvalidRecord("schema_registry", str(exc))
        found = self._codecs[key]
        if isinstance(found, InvalidRecord):
            raise found
        return found

    def _reject(self, line: Line, exc: InvalidRecord) -> None:
        self.stats.bad[exc.reason] += 1
        field_note = f" field={exc.field}" if exc.field else ""
        message = f"{exc.reason}{field_note}: {exc.message}"
        print(f"{_where(line)}: {message}", file=self.errors)


def codecs_for(config: Config | None) -> CodecOf:
    """The codecs of `config`'s formats; its schema registry for confluent_avro.

    The registry is reached only once a record goes to a confluent_avro
    topic; a RegistryError from it is the `Sender`'s to report per line.
    """
    catalog = SchemaCatalog.load()
    registry = None
    if config is not None and config.schema_registry is not None:
        registry = RegistryClient.from_config(config.schema_registry)

    def codec_of(topic: str, fmt: Format, kind: str) -> Codec:
        if fmt != "confluent_avro":
            return make_codec(fmt, catalog=catalog)
        return topic_codec(
            Topic(name=topic, format=fmt), catalog, registry, INPUT_SCHEMAS[kind]
        )

    return codec_of


def parse_routes(pairs: Iterable[str]) -> dict[str, str]:
    """``["page_view=web.page_views"]`` as ``{"page_view": "web.page_views"}``."""
    routes: dict[str, str] = {}
    for pair in pairs:
        kind, sep, topic = pair.partition("=")
        if not sep or not kind or not topic:
            raise ConfigError("--route", f"{pair!r} is not TYPE=TOPIC")
        if kind not in ROUTABLE_TYPES:
            # The scorer would dead-letter such records: the route is a typo.
            message = (
                f"the TYPE routed to {topic!r} is not one of "
                f"{', '.join(ROUTABLE_TYPES)}"
            )
            raise ConfigError("--route", message)
        routes[kind] = checked_topic("--route", topic)
    return routes


def checked_topic(flag: str, topic: str) -> str:
    """A topic named on the command line, refused here if Kafka would refuse it.

    The producer takes any name and fails each record at delivery instead.
    """
    problem = topic_name_problem(topic)
    if problem is not None:
        raise ConfigError(flag, f"{topic!r} is {problem}")
    return topic


def _where(line: Line) -> str:
    return f"{line.source}:{line.number}"


def _refused(exc: KafkaException, topic: str, size: int) -> Exception:
    """What the producer's refusal of one message means for the run.

    A fatal error ends it; any other refusal concerns this record alone.
    """
    error: KafkaError = exc.args[0]
    if error.fatal():
        return BrokerError(f"cannot produce to topic {topic}: {error.str()}")
    if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return InvalidRecord(
            "too_large",
            f"{size:,} bytes (key and value) is over message.max.bytes",
        )
    return InvalidRecord(error.name().lstrip("_").lower(), error.str())


def _config_routes(config: Config | None) -> dict[str, str]:
    if config is None:
        return {}
    routes: dict[str, str] = {}
    if config.topics.firmographics is not None:
        routes["firmographics"] = config.topics.firmographics.name
    if len(config.topics.events) == 1:
        only = config.topics.events[0].name
        routes |= dict.fromkeys(ACTIVITY_TYPES, only)
    for topic in config.topics.events:
        routes |= dict.fromkeys(topic.types, topic.name)
    return routes
