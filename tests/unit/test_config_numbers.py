"""Numbers in the config: finite, within their limits, and never booleans.

An infinite threshold or points once passed `check-config` and then made
scores no JSON output could hold; `true` passed as the number 1.
"""

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from scorer.config import Config, default_config_path, load_config, parse_config
from scorer.errors import ConfigError

INF, NAN = float("inf"), float("nan")
# The default's blog_read rule; uncapped, it makes every threshold reachable.
BLOG_READ = "scoring.engagement_rules.0"


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(default_config_path().read_text())
    assert isinstance(raw, dict)
    return raw


def put(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` in `raw`; a number in the path is a list index."""
    *parents, last = dotted.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value


def uncapped(raw: dict[str, Any]) -> dict[str, Any]:
    put(raw, f"{BLOG_READ}.cap", None)
    return raw


def error_at(field: str, value: Any, raw: dict[str, Any] | None = None) -> ConfigError:
    raw = default_raw() if raw is None else raw
    put(raw, field, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)

    assert caught.value.field == field
    return caught.value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scoring.mql.threshold", INF),
        ("scoring.mql.hysteresis", NAN),
        ("scoring.engagement_rules.0.points", -INF),
        ("scoring.engagement_rules.1.cap.points", INF),
        ("scoring.engagement_rules.5.match.min_minutes_watched", INF),
        ("scoring.fit_rules.1.points", NAN),
        ("scoring.fit_rules.0.range.max", INF),
        ("scoring.total.engagement_weight", INF),
        # YAML 1.1 reads 1e400 as text, which pydantic turns into inf.
        ("scoring.total.fit_weight", "1e400"),
    ],
)
def test_nan_and_infinity_are_refused_with_the_field(field: str, value: Any) -> None:
    error = error_at(field, value, uncapped(default_raw()))

    assert error.message == "Input should be a finite number"


def test_an_infinite_threshold_is_refused_though_any_score_is_reachable(
    tmp_path: Path,
) -> None:
    """The user's report: with an uncapped rule it passed the reachability check."""
    path = tmp_path / "uncapped.yaml"
    path.write_text(yaml.safe_dump(uncapped(default_raw())))

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"SCORER_SCORING__MQL__THRESHOLD": ".inf"})

    assert caught.value.details == [
        "scoring.mql.threshold: Input should be a finite number "
        "(from SCORER_SCORING__MQL__THRESHOLD)"
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scoring.half_life", INF),
        ("scoring.allowed_lateness", NAN),
        ("scoring.dedupe_horizon", "1" + "0" * 400 + "ms"),
        ("scoring.engagement_rules.0.cap.window", "365001d"),
        ("scoring.engagement_rules.0.half_life", -(10**400)),
    ],
)
def test_a_duration_beyond_a_thousand_years_is_refused(field: str, value: Any) -> None:
    """inf and a 400-digit duration raised OverflowError, a traceback."""
    error = error_at(field, value)

    assert error.message == "must be a finite duration of at most 365000d"


def test_a_thousand_years_is_the_longest_duration() -> None:
    raw = default_raw()
    put(raw, "scoring.half_life", "365000d")

    assert parse_config(raw).scoring.half_life == 365_000 * 86_400_000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (f"{BLOG_READ}.points", 1e308),
        ("scoring.engagement_rules.2.points", -1_000_001),
        ("scoring.fit_rules.0.points", 2e6),
    ],
)
def test_points_beyond_a_million_are_refused(field: str, value: float) -> None:
    error = error_at(field, value, uncapped(default_raw()))

    assert error.message == "must be between -1,000,000 and 1,000,000"


def test_a_million_points_either_way_is_accepted() -> None:
    raw = default_raw()
    put(raw, "scoring.engagement_rules.0.points", 1_000_000)
    put(raw, "scoring.engagement_rules.0.cap.points", 1_000_000)
    put(raw, "scoring.fit_rules.0.points", -1e6)

    config = parse_config(raw)

    assert config.scoring.engagement_rules[0].points == 1_000_000
    assert config.scoring.fit_rules[0].points == -1_000_000


def test_a_weight_above_a_thousand_is_refused() -> None:
    error = error_at("scoring.total.fit_weight", 1000.5)

    assert error.message == "Input should be less than or equal to 1000"


def numeric_settings(
    model: type[BaseModel] = Config, prefix: str = ""
) -> Iterator[str]:
    """The dotted path of every number outside lists, in every section."""
    for name, info in model.model_fields.items():
        if typing.get_origin(info.annotation) is tuple:
            continue
        kinds = [_bare(kind) for kind in typing.get_args(info.annotation)]
        kinds = kinds or [info.annotation]
        models = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if models:
            yield from numeric_settings(models[0], f"{prefix}{name}.")
        elif int in kinds or float in kinds:
            yield f"{prefix}{name}"


def _bare(kind: Any) -> Any:
    """`int` for `Annotated[int, ...]` (as in `Integer | None`)."""
    if typing.get_origin(kind) is typing.Annotated:
        return typing.get_args(kind)[0]
    return kind


NUMERIC_SETTINGS = list(numeric_settings())


def test_the_numeric_settings_are_found() -> None:
    expected = {
        "scoring.mql.threshold",
        "scoring.half_life",
        "scoring.total.fit_weight",
        "pipeline.batch_size",
        "metrics.port",
        "schema_registry.retries",
    }

    assert expected <= set(NUMERIC_SETTINGS)


@pytest.mark.parametrize("path", NUMERIC_SETTINGS)
def test_a_boolean_is_not_taken_as_a_number(path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={path: "true"}, environ={})

    mine = [d for d in caught.value.details if d.startswith(f"{path}: ")]
    assert len(mine) == 1
    assert mine[0].endswith(", not a boolean (from the command line)")


def test_a_boolean_threshold_is_named_instead_of_a_hysteresis_error() -> None:
    """`--set scoring.mql.threshold=true` was read as 1, below the hysteresis."""
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"scoring.mql.threshold": "true"}, environ={})

    assert caught.value.details == [
        "scoring.mql.threshold: must be a number, not a boolean (from the command line)"
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scoring.engagement_rules.0.points", True),
        ("scoring.engagement_rules.0.cap.points", True),
        ("scoring.engagement_rules.5.match.min_minutes_watched", False),
        ("scoring.fit_rules.0.range.min", True),
        ("scoring.fit_rules.2.points", True),
    ],
)
def test_a_boolean_in_a_rule_is_not_taken_as_a_number(field: str, value: bool) -> None:
    error = error_at(field, value)

    assert error.message == "must be a number, not a boolean"


def test_a_boolean_duration_is_refused() -> None:
    error = error_at("scoring.engagement_rules.0.cap.window", True)

    assert error.message.endswith("'2w', not a boolean")


@pytest.mark.parametrize(
    ("text", "number", "ms"),
    [
        ("86400", 86400, 86_400_000),
        (" 90 ", 90, 90_000),
        ("1.5", 1.5, 1500),
        ("+30", 30, 30_000),
        ("1e6", 1e6, 1_000_000_000),  # unquoted in YAML 1.1, still text
    ],
)
def test_a_number_of_seconds_as_text_is_the_same_duration(
    text: str, number: float, ms: int
) -> None:
    as_text, as_number = default_raw(), default_raw()
    put(as_text, "scoring.half_life", text)
    put(as_number, "scoring.half_life", number)

    assert parse_config(as_text).scoring.half_life == ms
    assert parse_config(as_number).scoring.half_life == ms


def test_a_quoted_number_of_seconds_from_set_or_the_environment_is_read() -> None:
    from_set = load_config(overrides={"scoring.half_life": '"86400"'}, environ={})
    from_env = load_config(environ={"SCORER_SCORING__HALF_LIFE": "'86400'"})

    assert from_set.scoring.half_life == 86_400_000
    assert from_env.scoring.half_life == 86_400_000


@pytest.mark.parametrize("number", [-5, 0, 365_001 * 86_400, 10**400])
def test_seconds_as_text_meet_the_same_checks_as_a_number(number: float) -> None:
    field = "scoring.half_life"
    as_text = error_at(field, str(number))

    assert as_text.message == error_at(field, number).message


def test_a_bad_duration_lists_every_form_it_accepts() -> None:
    error = error_at("scoring.half_life", "fortnight")

    assert error.message == (
        "a duration: a number of seconds, quoted or not (90, '90', '1.5', '1e6'), "
        "or a number with a unit ms, s, m, h, d or w, as in '500ms', '30s', "
        "'15m', '12h', '7d' or '2w'"
    )


def test_every_duration_the_error_gives_as_an_example_is_accepted() -> None:
    error = error_at("scoring.half_life", "2 weeks")
    examples = [*error.message.split("'")[1::2], "90"]

    for example in examples:
        raw = default_raw()
        put(raw, "scoring.half_life", example)
        assert parse_config(raw).scoring.half_life > 0, example


def test_numbers_written_as_text_are_still_read() -> None:
    """YAML 1.1 reads 1e6 as text; it was a number before and still is."""
    raw = default_raw()
    put(raw, "scoring.engagement_rules.0.points", "1e6")
    put(raw, "scoring.mql.threshold", "60")

    config = parse_config(raw)

    assert config.scoring.engagement_rules[0].points == 1_000_000
    assert config.scoring.mql.threshold == 60


@pytest.mark.parametrize("path", NUMERIC_SETTINGS)
def test_a_huge_number_is_refused_everywhere(path: str) -> None:
    """`redis.timeout_s=1e300` passed, and `run` died in an OverflowError."""
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={path: "1e300"}, environ={})

    mine = [d for d in caught.value.details if _names(d, path)]
    assert len(mine) == 1
    assert mine[0].endswith("(from the command line)")


def _names(detail: str, path: str) -> bool:
    """Whether an error names `path`: checks across fields name it in the text."""
    field, _, message = detail.partition(": ")
    name = path.rpartition(".")[2]
    return path.startswith(field) and name in f"{field}.{message}"


@pytest.mark.parametrize("path", ["redis.timeout_s", "schema_registry.timeout_s"])
def test_a_timeout_is_at_most_thirty_seconds(path: str) -> None:
    # One retry: 30 s tries with the default four would outlast the bound
    # on a whole lookup (the test below).
    overrides = {
        "schema_registry.url": "http://127.0.0.1:8081",
        "schema_registry.retries": "1",
    }

    config = load_config(overrides={**overrides, path: "30"}, environ={})
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={**overrides, path: "30.5"}, environ={})

    section, field = path.split(".")
    assert getattr(getattr(config, section), field) == 30
    assert caught.value.details == [
        f"{path}: Input should be less than or equal to 30 (from the command line)"
    ]


def test_registry_lookups_that_could_outlast_the_poll_limit_are_refused() -> None:
    url = {"schema_registry.url": "http://127.0.0.1:8081"}
    slow = {**url, "schema_registry.timeout_s": "30", "schema_registry.retries": "3"}

    with pytest.raises(ConfigError) as caught:
        load_config(overrides=slow, environ={})
    bounded = load_config(
        overrides={**slow, "schema_registry.retries": "2"}, environ={}
    )

    (detail,) = caught.value.details
    assert detail.startswith("schema_registry: retries and timeout_s let one lookup")
    assert "121.75 s, beyond 120 s" in detail
    assert bounded.schema_registry is not None
    assert bounded.schema_registry.longest_wait_s() == 3 * 30 + 0.25 + 0.5


def test_the_default_registry_retries_wait_as_documented() -> None:
    config = load_config(
        overrides={"schema_registry.url": "http://127.0.0.1:8081"}, environ={}
    )

    assert config.schema_registry is not None
    # 4 retries: 3.75 s of waiting between 5 tries of at most 5 s each.
    assert config.schema_registry.longest_wait_s() == 5 * 5.0 + 3.75
