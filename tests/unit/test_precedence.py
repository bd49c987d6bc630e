"""Config precedence: file < environment < command-line flags."""

from pathlib import Path

import pytest

from scorer.cli import options
from scorer.cli.argument_parser import parser
from scorer.config import default_config_path, load_config, split_dotted
from scorer.errors import ConfigError


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    text = default_config_path().read_text()
    text += "\nlogging: {format: text, level: WARNING}\n"
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("group_id: lead-scorer", "group_id: from-file"))
    return path


def test_flags_beat_the_environment_which_beats_the_file(config_file: Path) -> None:
    environ = {
        "SCORER_KAFKA__GROUP_ID": "from-env",
        "SCORER_PIPELINE__BATCH_SIZE": "200",
        "SCORER_LOGGING__FORMAT": "json",
    }
    overrides = {"kafka.group_id": "from-flag", "metrics.port": "9200"}

    config = load_config(config_file, environ, overrides)

    assert config.kafka.group_id == "from-flag"
    assert config.pipeline.batch_size == 200
    assert config.metrics.port == 9200
    assert config.logging.format == "json"
    assert config.logging.level == "WARNING"


def test_librdkafka_names_keep_their_dots() -> None:
    assert split_dotted("kafka.settings.socket.timeout.ms") == [
        "kafka",
        "settings",
        "socket.timeout.ms",
    ]
    assert split_dotted("scoring.mql.threshold") == ["scoring", "mql", "threshold"]
    with pytest.raises(ConfigError, match="not a dotted path"):
        split_dotted("kafka..group_id")


def test_a_set_flag_reaches_librdkafka_settings(config_file: Path) -> None:
    overrides = {"kafka.consumer_settings.fetch.max.bytes": "1048576"}

    config = load_config(config_file, {}, overrides)

    assert config.kafka.consumer_settings == {"fetch.max.bytes": 1048576}


def test_a_bad_override_names_the_field(config_file: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(config_file, {}, {"pipeline.batch_size": "0"})

    assert raised.value.field == "pipeline.batch_size"


def test_run_flags_become_overrides() -> None:
    args = parser().parse_args(
        [
            "--log-json",
            "--log-level",
            "debug",
            "run",
            "--set",
            "pipeline.batch_size=10",
            "--set",
            "kafka.settings.client.id=x=y",
            "--bootstrap-servers",
            "b:9092",
            "--redis-url",
            "redis://r:6379/1",
            "--metrics-port",
            "9300",
        ]
    )

    assert options.overrides(args) == {
        "pipeline.batch_size": "10",
        "kafka.settings.client.id": "x=y",
        "kafka.bootstrap_servers": "b:9092",
        "redis.url": "redis://r:6379/1",
        "metrics.port": "9300",
        "logging.level": "DEBUG",
        "logging.format": "json",
    }


def test_a_set_flag_without_a_value_is_refused() -> None:
    args = parser().parse_args(["run", "--set", "pipeline.batch_size"])

    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        options.overrides(args)


def test_a_bad_value_from_the_environment_names_its_variable(config_file: Path) -> None:
    environ = {"SCORER_SCORING__MQL__THRESHOLD": "abc"}

    with pytest.raises(ConfigError) as caught:
        load_config(config_file, environ)

    assert caught.value.field == "scoring.mql.threshold"
    assert caught.value.message.endswith("(from SCORER_SCORING__MQL__THRESHOLD)")


def test_a_bad_value_from_a_flag_names_the_flag_and_file_errors_stay_plain(
    config_file: Path,
) -> None:
    text = config_file.read_text().replace("batch_size: 1000", "batch_size: 0")
    config_file.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(config_file, {}, {"metrics.port": "-1"})

    details = caught.value.details
    assert "pipeline.batch_size: Input should be greater than or equal to 1" in details
    assert any(
        line.startswith("metrics.port:") and line.endswith("(from the command line)")
        for line in details
    )
