"""Topic names in the config: Kafka's rule, checked before anything runs.

`--set 'topics.output.name=bad topic name!'` passed `check-config`; `scorer
run` then wrote to Redis and died in a KafkaException traceback.
"""

from typing import Any

import pytest
import yaml

from scorer.config import default_config_path, load_config, parse_config
from scorer.errors import ConfigError

EXPECTED = (
    "not a Kafka topic name: use 1 to 249 letters, digits, '.', '_' or '-', "
    "not '.' or '..'"
)
# Where each topic field sits in the raw config, and its dotted path.
TOPIC_FIELDS = {
    "topics.events.0.name": ("events", 0, "name"),
    "topics.firmographics.name": ("firmographics", "name"),
    "topics.output.name": ("output", "name"),
    "topics.dead_letter": ("dead_letter",),
}


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(default_config_path().read_text())
    assert isinstance(raw, dict)
    return raw


def with_topic(field: str, name: str) -> dict[str, Any]:
    raw = default_raw()
    *parents, last = TOPIC_FIELDS[field]
    node: Any = raw["topics"]
    for part in parents:
        node = node[part]
    node[last] = name
    return raw


@pytest.mark.parametrize("field", TOPIC_FIELDS)
@pytest.mark.parametrize(
    "name", ["bad topic name!", ".", "..", "", "x" * 250, "tópico", "a/b", "a:b"]
)
def test_a_name_kafka_refuses_is_refused_with_its_field(field: str, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_topic(field, name))

    assert (caught.value.field, caught.value.message) == (field, EXPECTED)


@pytest.mark.parametrize("name", ["x" * 249, "Lead.Scores_v2-eu", "...", "_"])
def test_every_name_kafka_takes_is_taken(name: str) -> None:
    config = parse_config(with_topic("topics.output.name", name))

    assert config.topics.output.name == name


def test_a_bad_name_from_the_command_line_says_so() -> None:
    """The tester's case, as `check-config --set` reads it."""
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"topics.output.name": "bad topic name!"})

    assert caught.value.details == [
        f"topics.output.name: {EXPECTED} (from the command line)"
    ]
