"""Configuration: the shipped default, and errors that name the field."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from scorer.config import (
    default_config_path,
    load_config,
    node_address,
    parse_config,
)
from scorer.errors import ConfigError

EMPTY = "an empty value; give text, or leave the field out"


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(default_config_path().read_text())
    assert isinstance(raw, dict)
    return raw


def error_of(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value


def test_the_default_config_is_valid_and_small() -> None:
    config = load_config(environ={})
    criteria = len(config.scoring.engagement_rules) + len(config.scoring.fit_rules)

    assert 5 <= criteria <= 10
    assert config.scoring.rules_version.startswith("default-")


def test_durations_are_read_in_milliseconds() -> None:
    config = load_config(environ={})

    assert config.scoring.half_life == 14 * 86_400_000
    assert config.scoring.engagement_rules[0].cap is not None
    assert config.scoring.engagement_rules[0].cap.window == 7 * 86_400_000


def test_an_unknown_field_is_named() -> None:
    raw = default_raw()
    raw["scoring"]["mql"]["treshold"] = 50

    error = error_of(raw)
    assert error.field == "scoring.mql.treshold"
    assert error.message == "unknown field; did you mean threshold?"


def test_a_misspelt_required_field_is_one_problem_not_two() -> None:
    raw = default_raw()
    raw["scoring"]["mql"]["treshold"] = raw["scoring"]["mql"].pop("threshold")

    error = error_of(raw)
    assert error.details == [
        "scoring.mql.treshold: unknown field; did you mean threshold?"
    ]


@pytest.mark.parametrize(
    ("path", "wrong", "right"),
    [
        (("scoring", "engagement_rules", 0, "match"), "url_contain", "url_contains"),
        (("scoring", "engagement_rules", 1), "half_lfe", "half_life"),
        (("scoring", "fit_rules", 0), "rnage", "range"),
        # An optional section, Cap | None; and case.
        (("scoring", "engagement_rules", 0, "cap"), "windw", "window"),
        (("scoring", "mql"), "THRESHOLD", "threshold"),
        (("kafka",), "bootstrap_server", "bootstrap_servers"),
        ((), "metric", "metrics"),
    ],
)
def test_a_misspelt_field_is_matched_at_its_own_depth(
    path: tuple[str | int, ...], wrong: str, right: str
) -> None:
    raw = default_raw()
    mapping: Any = raw
    for key in path:
        mapping = mapping.setdefault(key, {}) if isinstance(key, str) else mapping[key]
    mapping[wrong] = mapping.pop(right, "x")

    error = error_of(raw)
    assert (error.field, error.message) == (
        ".".join(map(str, (*path, wrong))),
        f"unknown field; did you mean {right}?",
    )


def test_a_field_like_no_known_one_is_only_unknown() -> None:
    raw = default_raw()
    raw["scoring"]["fit_rules"][0]["weighting"] = 2
    raw["scoring"]["total"]["weight"] = 1  # fit_ or engagement_: no guess

    assert error_of(raw).details == [
        "scoring.total.weight: unknown field",
        "scoring.fit_rules.0.weighting: unknown field",
    ]


def test_a_negative_half_life_is_named() -> None:
    raw = default_raw()
    raw["scoring"]["engagement_rules"][1]["half_life"] = -5

    assert error_of(raw).field == "scoring.engagement_rules.1.half_life"


def test_a_bad_duration_says_what_is_expected() -> None:
    raw = default_raw()
    raw["scoring"]["half_life"] = "fortnight"

    error = error_of(raw)
    assert error.field == "scoring.half_life"
    assert "'7d'" in error.message


def test_an_unreachable_threshold_is_refused() -> None:
    raw = default_raw()
    for rule in raw["scoring"]["engagement_rules"]:
        rule["cap"] = {"points": 1, "window": "30d"}
    raw["scoring"]["mql"]["threshold"] = 500

    error = error_of(raw)
    assert "mql.threshold 500 cannot be reached" in error.message
    assert error.field == "scoring"


def test_a_hysteresis_as_large_as_the_threshold_is_refused() -> None:
    # The band would reach down to a score of 0: no MQL could ever leave.
    raw = default_raw()
    raw["scoring"]["mql"]["hysteresis"] = raw["scoring"]["mql"]["threshold"] = 60

    error = error_of(raw)
    assert (error.field, error.message) == (
        "scoring.mql",
        "hysteresis must be smaller than threshold",
    )


def test_a_dedupe_horizon_shorter_than_the_allowed_lateness_is_refused() -> None:
    raw = default_raw()
    raw["scoring"]["allowed_lateness"] = "1d"
    raw["scoring"]["dedupe_horizon"] = "12h"

    error = error_of(raw)
    assert (error.field, error.message) == (
        "scoring",
        "dedupe_horizon must be at least allowed_lateness",
    )


def test_negative_fit_points_are_left_out_of_the_highest_score() -> None:
    # One rule capped at 30 points a day, halving daily. Just past midnight,
    # today's full cap and yesterday's (earned at its very end) count whole,
    # and each day before half the one after it: 30 * (1 + 1 + 1/2 + ...) =
    # 90. The best fit matches the +50 rule and not the -40 one: 50. So the
    # highest score is 140 exactly; counting the -40 would make it 100.
    raw = default_raw()
    demo = raw["scoring"]["engagement_rules"][1]
    size, industry = raw["scoring"]["fit_rules"][:2]
    raw["scoring"]["engagement_rules"] = [
        {**demo, "cap": {"points": 30, "window": "1d"}, "half_life": "1d"}
    ]
    raw["scoring"]["fit_rules"] = [{**size, "points": 50}, {**industry, "points": -40}]
    raw["scoring"]["mql"]["threshold"] = 140

    scoring = parse_config(raw).scoring

    assert (scoring.max_fit(), scoring.max_engagement()) == (50.0, 90.0)
    assert scoring.mql.threshold == 140


def test_duplicate_rule_names_are_refused() -> None:
    raw = default_raw()
    rules = raw["scoring"]["engagement_rules"]
    rules[1]["name"] = rules[0]["name"]

    assert "duplicate rule names: blog_read" in error_of(raw).message


def test_a_condition_for_another_event_type_is_refused() -> None:
    raw = default_raw()
    raw["scoring"]["engagement_rules"][0]["match"]["asset_type"] = ["ebook"]

    error = error_of(raw)
    assert error.field == "scoring.engagement_rules.0.match"
    assert "asset_type applies only to content_download" in error.message


@pytest.mark.parametrize(
    ("rule", "field", "value", "expected"),
    [
        (0, "category", [], "an empty list"),
        (0, "url_contains", [], "an empty list"),
        (0, "url_contains", ["/blog/", ""], "an empty value"),
        (4, "asset_type", ["  "], "an empty value"),
    ],
)
def test_a_condition_given_empty_is_refused_as_it_would_match_everything(
    rule: int, field: str, value: list[str], expected: str
) -> None:
    raw = default_raw()
    raw["scoring"]["engagement_rules"][rule]["match"][field] = value

    error = error_of(raw)
    assert error.field == f"scoring.engagement_rules.{rule}.match.{field}"
    assert error.message.startswith(expected)


@pytest.mark.parametrize("pattern", ["", "  "])
def test_an_empty_pattern_is_refused_as_it_would_be_found_everywhere(
    pattern: str,
) -> None:
    raw = default_raw()
    raw["scoring"]["engagement_rules"][1]["match"]["url_pattern"] = pattern
    raw["scoring"]["fit_rules"][2]["pattern"] = pattern

    error = error_of(raw)
    assert error.details == [
        f"scoring.engagement_rules.1.match.url_pattern: {EMPTY}",
        f"scoring.fit_rules.2.pattern: {EMPTY}",
    ]


def test_a_fit_rule_with_an_empty_choice_is_refused() -> None:
    raw = default_raw()
    raw["scoring"]["fit_rules"][1]["any_of"] = ["software", ""]

    error = error_of(raw)
    assert error.field == "scoring.fit_rules.1.any_of"
    assert error.message.startswith("an empty value")


@pytest.mark.parametrize(
    ("path", "value"), [(("metrics",), 9100), (("kafka", "settings"), "acks=all")]
)
def test_a_section_given_as_a_value_is_told_to_be_a_mapping(
    path: tuple[str, ...], value: object
) -> None:
    raw = default_raw()
    parent = raw
    for part in path[:-1]:
        parent = parent.setdefault(part, {})
    parent[path[-1]] = value

    error = error_of(raw)
    assert error.field == ".".join(path)
    # Not pydantic's "instance of MetricsServer": a class the user never wrote.
    assert error.message == (
        "must be a mapping of keys to values, not a single value or a list"
    )


def test_a_list_given_as_one_text_is_told_to_be_a_list() -> None:
    raw = default_raw()
    raw["scoring"]["engagement_rules"][0]["match"]["url_contains"] = "/blog/"

    error = error_of(raw)
    assert error.field == "scoring.engagement_rules.0.match.url_contains"
    assert error.message.startswith("must be a list")


def test_a_duration_given_as_a_list_is_told_what_a_duration_is() -> None:
    raw = default_raw()
    raw["scoring"]["half_life"] = ["10d"]

    error = error_of(raw)
    assert error.field == "scoring.half_life"
    assert "'7d'" in error.message


def test_every_problem_is_listed() -> None:
    raw = default_raw()
    raw["scoring"]["half_life"] = 0
    raw["pipeline"]["batch_size"] = 0

    details = error_of(raw).details
    assert any(d.startswith("scoring.half_life:") for d in details)
    assert any(d.startswith("pipeline.batch_size:") for d in details)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load_config(
        environ={
            "SCORER_KAFKA__BOOTSTRAP_SERVERS": "10.0.0.1:9093",
            "SCORER_PIPELINE__BATCH_SIZE": "250",
            "SCORER_RDKAFKA_SOCKET_KEEPALIVE_ENABLE": "true",
        }
    )

    assert config.kafka.bootstrap_servers == "10.0.0.1:9093"
    assert config.pipeline.batch_size == 250
    assert config.kafka.settings == {"socket.keepalive.enable": "true"}


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml", environ={})

    assert "cannot read" in caught.value.message


def test_the_rules_version_changes_with_the_rules() -> None:
    raw = default_raw()
    before = parse_config(raw).scoring.rules_version
    raw["scoring"]["engagement_rules"][0]["points"] = 31

    assert parse_config(raw).scoring.rules_version != before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dead_letter": "marketing.web"}, "dead_letter 'marketing.web' is also an"),
        ({"output": {"name": "marketing.web"}}, "output 'marketing.web' is also an"),
        ({"dead_letter": "scores"}, "dead_letter 'scores' is also the output"),
    ],
)
def test_a_topic_used_for_two_roles_is_refused(
    change: dict[str, Any], message: str
) -> None:
    """A dead-letter topic that is an input would loop its dead letters."""
    raw = default_raw()
    raw["topics"]["events"][0]["name"] = "marketing.web"
    raw["topics"]["output"]["name"] = "scores"
    raw["topics"].update(change)

    error = error_of(raw)
    assert error.field == "topics"
    assert error.message.startswith(message)


@pytest.mark.parametrize(
    ("section", "setting", "value"),
    [
        ("consumer_settings", "enable.auto.commit", True),
        ("consumer_settings", "enable.auto.offset.store", "true"),
        ("producer_settings", "acks", 1),
        ("settings", "enable.idempotence", False),
    ],
)
def test_a_setting_the_guarantees_need_is_refused_at_validation(
    section: str, setting: str, value: Any
) -> None:
    """check-config must refuse what `scorer run` would refuse."""
    raw = default_raw()
    raw.setdefault("kafka", {})[section] = {setting: value}

    error = error_of(raw)
    assert error.field == f"kafka.{section}.{setting}"
    assert error.message.startswith("must stay")


def test_the_fixed_settings_may_be_given_with_their_own_values() -> None:
    raw = default_raw()
    raw.setdefault("kafka", {})["consumer_settings"] = {"enable.auto.commit": "false"}
    raw["kafka"]["producer_settings"] = {"acks": "all"}

    config = parse_config(raw)
    assert config.kafka.producer_settings == {"acks": "all"}


def test_a_transactional_id_setting_is_refused_at_validation() -> None:
    raw = default_raw()
    raw.setdefault("kafka", {})["producer_settings"] = {"transactional.id": "x"}

    error = error_of(raw)
    assert error.field == "kafka.producer_settings.transactional.id"
    assert "pipeline.transactional" in error.message


@pytest.mark.parametrize("port", ["notaport", "99999"])
def test_a_redis_url_with_a_bad_port_is_named_without_the_url(port: str) -> None:
    raw = default_raw()
    raw["redis"] = {"url": f"redis://bob:s3cret@127.0.0.1:{port}/0"}

    error = error_of(raw)
    assert error.field == "redis.url"
    assert "port" in error.message
    assert "s3cret" not in str(error) and port not in error.message


def test_more_cluster_nodes_are_read_as_hosts_and_ports() -> None:
    raw = default_raw()
    raw["redis"] = {
        "url": "redis://10.0.0.1:7000/0",
        "cluster": True,
        "cluster_nodes": ["10.0.0.2:7000", "redis-3.local:7001", "[fd00::4]:7000"],
    }

    config = parse_config(raw)
    nodes = [node_address(a) for a in config.redis.cluster_nodes]

    assert nodes == [("10.0.0.2", 7000), ("redis-3.local", 7001), ("fd00::4", 7000)]


@pytest.mark.parametrize(
    "address", ["10.0.0.2", "10.0.0.2:0", "10.0.0.2:99999", ":7000", "u:pw@h:7000"]
)
def test_a_cluster_node_that_is_not_host_and_port_is_refused(address: str) -> None:
    raw = default_raw()
    raw["redis"] = {"cluster": True, "cluster_nodes": [address]}

    error = error_of(raw)
    assert error.field == "redis.cluster_nodes"
    assert error.message == "item 1: give host:port, with a port from 1 to 65535"
    assert "pw" not in str(error)


def test_cluster_nodes_need_a_cluster() -> None:
    raw = default_raw()
    raw["redis"] = {"cluster_nodes": ["10.0.0.2:7000"]}

    error = error_of(raw)
    assert error.field == "redis"
    assert "cluster: true" in error.message


def test_a_binary_config_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "is not UTF-8 text" in caught.value.message


def test_a_key_given_twice_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    text = default_config_path().read_text()
    path.write_text(text + "\nlogging: {level: INFO}\nlogging: {level: DEBUG}\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "the key logging is given twice" in caught.value.message


@pytest.mark.parametrize("field", ["group_id", "bootstrap_servers"])
@pytest.mark.parametrize("value", ["", " ", " lead-scorer"])
def test_a_blank_group_id_or_broker_list_is_refused(field: str, value: str) -> None:
    """An empty group id aborts the process inside confluent-kafka."""
    raw = default_raw()
    raw.setdefault("kafka", {})[field] = value

    error = error_of(raw)
    assert error.field == f"kafka.{field}"
    assert error.message.startswith("must not be empty")


def test_an_event_type_carried_by_two_topics_is_refused() -> None:
    raw = default_raw()
    raw["topics"]["events"][1]["types"] = ["content_download", "page_view"]

    message = error_of(raw).message
    assert "types carried by two event topics: page_view" in message


def test_a_topic_carries_only_known_event_types() -> None:
    raw = default_raw()
    raw["topics"]["events"][0]["types"] = ["page_views"]

    error = error_of(raw)
    assert "topics.events.0.types.0" in str(error)
    assert "'page_view', 'content_download' or 'webinar'" in error.message


def test_a_rule_name_with_a_trailing_newline_is_refused() -> None:
    raw = default_raw()
    raw["scoring"]["engagement_rules"][0]["name"] = "blog_read\n"

    assert "scoring.engagement_rules.0.name" in str(error_of(raw))


def test_a_min_engagement_no_engagement_can_reach_is_refused() -> None:
    raw = default_raw()
    raw["scoring"]["mql"]["min_engagement"] = 10_000

    assert "mql.min_engagement 10000 cannot be reached" in error_of(raw).message


def test_a_type_listed_twice_on_one_topic_is_named_as_such() -> None:
    raw = default_raw()
    raw["topics"]["events"][0]["types"] = ["page_view", "page_view"]

    assert "web.page_views lists page_view twice" in error_of(raw).message


def test_a_section_variable_without_its_double_underscore_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        "SCORER_PIPELINE_BATCH_SIZE": "7",  # meant SCORER_PIPELINE__BATCH_SIZE
        "SCORER_SCHEMA_REGISTRY": "{url: http://r}",
        "SCORER_DATA": "/data",  # not the config's: no section of that name
        "SCORER_RDKAFKA_CLIENT_ID": "c",
        "SCORER_KAFKA__GROUP_ID": "g",
    }

    with caplog.at_level("WARNING", logger="scorer.config"):
        config = load_config(environ=environ)

    assert config.pipeline.batch_size != 7  # not read: hence the warning
    assert config.kafka.group_id == "g"
    assert [r.getMessage() for r in caplog.records] == [
        "environment variable SCORER_PIPELINE_BATCH_SIZE is not read: a section "
        "and its field are separated by __ (did you mean "
        "SCORER_PIPELINE__BATCH_SIZE?)",
        "environment variable SCORER_SCHEMA_REGISTRY is not read: a section and "
        "its field are separated by __ (set its fields, e.g. "
        "SCORER_SCHEMA_REGISTRY__<FIELD>)",
    ]


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("SCORER_SCORING_MQL_THRESHOLD", "SCORER_SCORING__MQL__THRESHOLD"),
        ("SCORER_REDIS_TLS_CA_FILE", "SCORER_REDIS__TLS__CA_FILE"),
        ("SCORER_TOPICS_OUTPUT_NAME", "SCORER_TOPICS__OUTPUT__NAME"),
        ("SCORER_REDIS_TIMEOUT_S", "SCORER_REDIS__TIMEOUT_S"),
    ],
)
def test_the_hint_for_a_variable_without_double_underscores_names_every_level(
    name: str, meant: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="scorer.config"):
        load_config(environ={name: "1"})

    assert [r.getMessage() for r in caplog.records] == [
        f"environment variable {name} is not read: a section and its field are "
        f"separated by __ (did you mean {meant}?)"
    ]

    # The hinted name is one the config reads.
    with pytest.raises(ConfigError) as caught:
        load_config(environ={meant: "[not, a, value]"})
    assert f"(from {meant})" in str(caught.value)


def test_an_unknown_section_from_a_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"SCORER_MQL__THRESHOLD": "5"})

    assert str(caught.value) == "mql: unknown field (from SCORER_MQL__THRESHOLD)"


# By position or, for a rule, by name: both go through the list.
INTO_A_LIST = [
    ("topics.events.0.format", "topics.events"),
    ("scoring.engagement_rules.pricing_page.points", "scoring.engagement_rules"),
]


@pytest.mark.parametrize(("path", "whole"), INTO_A_LIST)
@pytest.mark.parametrize("by_variable", [False, True])
def test_a_path_into_a_list_says_to_set_the_whole_list(
    path: str, whole: str, by_variable: bool
) -> None:
    variable = "SCORER_" + path.upper().replace(".", "__")
    environ = {variable: "20"} if by_variable else {}
    overrides = {} if by_variable else {path: "20"}

    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ, overrides=overrides)

    source = variable if by_variable else "the command line"
    assert caught.value.field == path
    assert caught.value.message == (
        f"a list item has no path of its own; set the whole list {whole} "
        f"as YAML (from {source})"
    )


def test_a_lists_only_bad_item_is_the_one_error_not_the_list_too_short() -> None:
    rules = "[{name: a, match: {type: webinar, url_contains: [x]}, points: 1}]"

    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"scoring.engagement_rules": rules})

    assert caught.value.details == [
        "scoring.engagement_rules.0.match: url_contains applies only to "
        "page_view events (from the command line)"
    ]


def test_an_empty_rule_list_is_still_too_short() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"scoring.engagement_rules": "[]"})

    assert caught.value.field == "scoring.engagement_rules"
    assert caught.value.message == "must hold at least 1 item (from the command line)"


def test_an_rdkafka_variable_without_a_name_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"SCORER_RDKAFKA_": "1"})

    assert str(caught.value) == "SCORER_RDKAFKA_: names no librdkafka setting"


def test_rules_that_keep_too_many_windows_open_are_refused() -> None:
    """A 1-minute cap with a week of lateness kept 10,081 windows open per
    lead, all read and written by every one of its updates."""
    raw = default_raw()
    raw["scoring"]["allowed_lateness"] = "7d"
    raw["scoring"]["engagement_rules"][1]["cap"]["window"] = "1m"

    error = error_of(raw)

    assert error.field == "scoring"
    assert error.message == (
        "the capped rules can keep 10,123 cap windows open per lead, more than "
        "1,000: a window stays open allowed_lateness past its end, and "
        "demo_request's 1m windows alone make 10,081; lengthen cap.window or "
        "shorten allowed_lateness"
    )


def test_the_default_rules_keep_few_windows_open() -> None:
    scoring = load_config(environ={}).scoring
    opened = [scoring.open_windows(rule) for rule in scoring.engagement_rules]

    # A day of lateness: a daily window and the one before; a weekly one
    # and, for a day after it ends, the one before.
    assert opened == [2, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("section", "wait"),
    [
        ("settings", 1000),
        ("consumer_settings", "1000"),
        ("consumer_settings", 5000),
        # librdkafka reads the leading digits and takes these as 1000.
        ("consumer_settings", "1000ms"),
        ("consumer_settings", "1000.5"),
    ],
)
def test_a_silence_a_healthy_fetch_can_last_is_refused(
    section: str, wait: int | str
) -> None:
    """A quiet topic's fetch is answered after fetch.wait.max.ms (scorer.silence)."""
    raw = default_raw()
    raw.setdefault("kafka", {})[section] = {"fetch.wait.max.ms": wait}
    raw["metrics"] = {"silent_after": "2s"}

    error = error_of(raw)
    assert error.field == "metrics.silent_after"
    assert error.message.startswith(
        f"2s must exceed twice the consumer's "
        f"fetch.wait.max.ms ({1000 if isinstance(wait, str) else wait} ms)"
    )


@pytest.mark.parametrize(("expire_after", "refused"), [("29d", True), ("30d", False)])
def test_leads_expire_no_sooner_than_their_event_ids(
    expire_after: str, refused: bool
) -> None:
    raw = default_raw()  # dedupe_horizon 30d
    raw.setdefault("redis", {})["expire_after"] = expire_after

    if not refused:
        assert parse_config(raw).redis.expire_after == 30 * 86_400_000
        assert parse_config(default_raw()).redis.expire_after is None
        return
    error = error_of(raw)
    assert (error.field, error.message) == (
        "redis.expire_after",
        "29d is shorter than scoring.dedupe_horizon (30d): a lead's remembered "
        "event ids expire with it",
    )


@pytest.mark.parametrize(
    ("field", "value", "flag", "other_value", "refusal"),
    [
        ("redis.expire_after", "1d", ("redis.url", "redis://h:1/0"), "2d", "2d is"),
        ("metrics.silent_after", "800ms", ("metrics.port", "0"), "900ms", "900ms"),
    ],
)
def test_a_value_checked_against_others_is_blamed_on_its_own_source(
    tmp_path: Path,
    field: str,
    value: str,
    flag: tuple[str, str],
    other_value: str,
    refusal: str,
) -> None:
    """Not on a flag that set another field of its section."""
    section, name = field.split(".")
    raw = default_raw()
    raw.setdefault(section, {})[name] = value
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    variable = f"SCORER_{section.upper()}__{name.upper()}"

    with pytest.raises(ConfigError) as from_file:
        load_config(config, environ={}, overrides=dict([flag]))
    with pytest.raises(ConfigError) as from_variable:
        load_config(config, environ={variable: other_value})

    assert from_file.value.field == from_variable.value.field == field
    assert "(from" not in from_file.value.message
    assert from_variable.value.message.startswith(refusal)
    assert from_variable.value.message.endswith(f"(from {variable})")


def test_a_silence_longer_than_two_fetch_waits_is_accepted() -> None:
    raw = default_raw()
    raw.setdefault("kafka", {})["settings"] = {"fetch.wait.max.ms": 5000}
    raw["kafka"]["consumer_settings"] = {
        "fetch.wait.max.ms": 900,
        "statistics.interval.ms": 2000,
    }
    raw["metrics"] = {"silent_after": "2s"}

    assert parse_config(raw).metrics.silent_after == 2000
    assert parse_config(default_raw()).metrics.silent_after == 15_000


@pytest.mark.parametrize(
    ("interval", "refused"), [(16000, True), (15000, False), (0, False)]
)
def test_a_silence_is_judged_at_least_as_often_as_it_lasts(
    interval: int, refused: bool
) -> None:
    raw = default_raw()
    raw.setdefault("kafka", {})["consumer_settings"] = {
        "statistics.interval.ms": interval
    }

    if not refused:
        assert parse_config(raw).metrics.silent_after == 15_000
        return
    error = error_of(raw)
    assert (error.field, error.message) == (
        "metrics.silent_after",
        "15s is judged every statistics.interval.ms of the consumer (16000 ms): "
        "set that below silent_after, or to 0 to judge no silence",
    )


def test_a_country_code_such_as_no_stays_text_in_a_fit_rule(tmp_path: Path) -> None:
    # YAML 1.1 reads NO as false: Norway would drop out of the list.
    path = tmp_path / "nordic.yaml"
    rule = "    - {name: nordic, field: country, any_of: [NO, SE, DK], points: 10}\n"
    text = default_config_path().read_text()
    path.write_text(text.replace("  fit_rules:\n", "  fit_rules:\n" + rule, 1))

    config = load_config(path, environ={})

    nordic = next(r for r in config.scoring.fit_rules if r.name == "nordic")
    assert list(nordic.any_of) == ["NO", "SE", "DK"]


@pytest.mark.parametrize(
    ("text", "threshold"), [("035", 35.0), ("0o43", 35.0), ("0x23", 35.0)]
)
def test_a_leading_zero_is_a_decimal_number_not_octal(
    text: str, threshold: float
) -> None:
    from_set = load_config(environ={}, overrides={"scoring.mql.threshold": text})
    from_environment = load_config(environ={"SCORER_SCORING__MQL__THRESHOLD": text})

    assert from_set.scoring.mql.threshold == threshold
    assert from_environment.scoring.mql.threshold == threshold


def test_base_60_is_not_read_as_a_number() -> None:
    # YAML 1.1 reads 1:30 as 90; YAML 1.2 reads text.
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"pipeline.batch_size": "1:30"})

    assert caught.value.field == "pipeline.batch_size"


def test_a_date_is_text_where_text_is_wanted() -> None:
    config = load_config(environ={}, overrides={"scoring.version": "2026-12-01"})

    assert config.scoring.rules_version.startswith("2026-12-01+")


@pytest.mark.parametrize(("text", "value"), [("true", True), ("False", False)])
def test_true_and_false_are_still_booleans(text: str, value: bool) -> None:
    config = load_config(environ={}, overrides={"pipeline.transactional": text})

    assert config.pipeline.transactional is value


def test_one_librdkafka_setting_from_the_environment_keeps_the_files_others(
    tmp_path: Path,
) -> None:
    raw = default_raw()
    raw["kafka"]["consumer_settings"] = {"queued.max.messages.kbytes": 16384}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    environ = {
        "SCORER_KAFKA__CONSUMER_SETTINGS__GROUP_INSTANCE_ID": "pod-0",
        "SCORER_KAFKA__PRODUCER_SETTINGS__LINGER_MS": "20",
    }

    config = load_config(path, environ=environ)

    assert config.kafka.consumer_settings == {
        "queued.max.messages.kbytes": 16384,
        "group.instance.id": "pod-0",
    }
    assert config.kafka.producer_settings == {"linger.ms": 20}


def test_yes_and_no_are_librdkafkas_true_and_false(tmp_path: Path) -> None:
    # YAML 1.1 read them as booleans; librdkafka takes only true and false.
    raw = default_raw()
    raw["kafka"]["consumer_settings"] = {"enable.auto.commit": "no"}
    raw["kafka"]["producer_settings"] = {"enable.idempotence": "Yes"}
    raw["kafka"]["settings"] = {"socket.keepalive.enable": "on", "client.id": "ls"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))

    kafka = load_config(path, environ={}).kafka

    assert kafka.consumer_settings == {"enable.auto.commit": False}
    assert kafka.producer_settings == {"enable.idempotence": True}
    assert kafka.settings == {"socket.keepalive.enable": True, "client.id": "ls"}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("!!int 0b101", "a value tagged !!int is not an integer"),
        ("!!float ''", "a value tagged !!float is not a number"),
        ("!!bool maybe", "a value tagged !!bool is not true or false"),
    ],
)
def test_a_tagged_value_that_is_not_its_type_is_a_yaml_error(
    tmp_path: Path, value: str, problem: str
) -> None:
    path = tmp_path / "tagged.yaml"
    text = default_config_path().read_text()
    path.write_text(text.replace("    threshold: 60", f"    threshold: {value}", 1))

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert caught.value.message.endswith(
        f"is not valid YAML: {problem} at line 22, column 16"
    )


@pytest.mark.parametrize("name", ["SCORER_KAFKA__SETTINGS___", "SCORER_RDKAFKA_X__Y"])
def test_a_variable_naming_no_librdkafka_setting_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={name: "x"})

    assert (caught.value.field, caught.value.message) == (
        name,
        "names no librdkafka setting",
    )


def test_a_setting_into_a_value_that_is_no_mapping_is_refused() -> None:
    # The whole map's variable is not a map: set over, it would vanish.
    environ = {
        "SCORER_KAFKA__CONSUMER_SETTINGS": "notamap",
        "SCORER_KAFKA__CONSUMER_SETTINGS__FETCH_MAX_BYTES": "5",
    }

    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)

    assert (caught.value.field, caught.value.message) == (
        "kafka.consumer_settings",
        "must be a mapping to set fetch.max.bytes in it (from "
        "SCORER_KAFKA__CONSUMER_SETTINGS__FETCH_MAX_BYTES)",
    )
