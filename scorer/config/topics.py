"""The Kafka topics the scorer reads and writes, and the wire format of each."""

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from scorer.config.fields import EventType, Frozen

WireFormat = Literal["avro", "json", "confluent_avro"]
# Kafka's rule for topic names (org.apache.kafka.common.internals.Topic):
# the broker refuses any other, after the scorer has written to Redis.
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
TOPIC_NAME_EXPECTED = "1 to 249 letters, digits, '.', '_' or '-', not '.' or '..'"


def topic_name_problem(name: str) -> str | None:
    """Why Kafka would refuse `name` as a topic name, or None."""
    if _TOPIC_NAME.fullmatch(name) and name not in (".", ".."):
        return None
    return f"not a Kafka topic name: use {TOPIC_NAME_EXPECTED}"


def _topic_name(value: str) -> str:
    problem = topic_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]


class Topic(Frozen):
    name: TopicName
    format: WireFormat = Field(
        default="avro",
        description="avro (single-object encoding), json, or confluent_avro "
        "(Schema Registry framing; needs schema_registry)",
    )


class EventTopic(Topic):
    types: tuple[EventType, ...] = Field(
        default=(),
        description="the event types this topic carries; `scorer produce` routes "
        "records of these types to it (the scorer reads any type on any topic)",
    )


class Topics(Frozen):
    events: tuple[EventTopic, ...] = Field(min_length=1)
    firmographics: Topic | None = None
    output: Topic
    dead_letter: TopicName

    @model_validator(mode="after")
    def _apart(self) -> Self:
        """Inputs, outputs and dead letters on distinct topics.

        A dead-letter topic that is also an input would consume its own dead
        letters again, for ever; an output topic that is an input would score
        the scorer's outputs.
        """
        inputs = self.input_names()
        twice = sorted({name for name in inputs if inputs.count(name) > 1})
        if twice:
            raise ValueError(f"input topics named twice: {', '.join(twice)}")
        if self.output.name in inputs:
            raise ValueError(f"output {self.output.name!r} is also an input topic")
        if self.dead_letter in inputs:
            raise ValueError(f"dead_letter {self.dead_letter!r} is also an input topic")
        if self.dead_letter == self.output.name:
            raise ValueError(f"dead_letter {self.dead_letter!r} is also the output")
        self._one_topic_per_type()
        return self

    def _one_topic_per_type(self) -> None:
        """A record's type names one topic, or `scorer produce` cannot choose."""
        for topic in self.events:
            listed = [kind for kind in topic.types if topic.types.count(kind) > 1]
            if listed:
                raise ValueError(f"{topic.name} lists {listed[0]} twice in types")
        carried = [kind for topic in self.events for kind in topic.types]
        twice = sorted({kind for kind in carried if carried.count(kind) > 1})
        if twice:
            raise ValueError(f"types carried by two event topics: {', '.join(twice)}")

    def input_names(self) -> list[str]:
        """The topics the scorer consumes: events, then firmographics."""
        return [t.name for t in (*self.events, self.firmographics) if t]

    def named_with(self, fmt: WireFormat) -> list[str]:
        """The names of the topics in wire format `fmt`, inputs first."""
        every = [*self.events, self.firmographics, self.output]
        return [t.name for t in every if t is not None and t.format == fmt]
