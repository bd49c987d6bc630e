"""Credentials in the config: kept as secrets wherever they come from, handed to
the clients, and never echoed by a config error or `check-config`."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from command import scorer as run_cli
from confluent_kafka import Consumer, Producer

from scorer.clients import (
    consumer_settings,
    producer_settings,
    redis_client,
    settings_checked_by_librdkafka,
)
from scorer.config import default_config_path, load_config, parse_config
from scorer.errors import ConfigError

SECRET = "s3cr3t-Hunter2"


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(default_config_path().read_text())
    assert isinstance(raw, dict)
    return raw


def error_of(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value


def shown(config: Any) -> str:
    """Every way a config object is commonly printed."""
    return " ".join([repr(config), str(config), config.model_dump_json()])


def test_rdkafka_credentials_from_the_environment_are_secrets() -> None:
    config = load_config(
        environ={
            "SCORER_RDKAFKA_SASL_USERNAME": "scorer",
            "SCORER_RDKAFKA_SASL_PASSWORD": SECRET,
            "SCORER_RDKAFKA_SSL_KEY_PASSWORD": SECRET + "-key",
        }
    )

    assert config.kafka.settings == {"sasl.username": "scorer"}
    assert set(config.kafka.secrets) == {"sasl.password", "ssl.key.password"}
    assert SECRET not in shown(config)
    assert consumer_settings(config)["sasl.password"] == SECRET
    assert producer_settings(config)["ssl.key.password"] == SECRET + "-key"


def test_credentials_among_the_file_settings_become_secrets() -> None:
    raw = default_raw()
    raw["kafka"]["settings"] = {
        "security.protocol": "SASL_SSL",
        "sasl.password": SECRET,
        "sasl.oauthbearer.client.secret": SECRET,
    }

    config = parse_config(raw)

    assert config.kafka.settings == {"security.protocol": "SASL_SSL"}
    assert set(config.kafka.secrets) == {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
    }
    assert SECRET not in shown(config)


def test_a_credential_given_twice_is_refused_without_its_value() -> None:
    raw = default_raw()
    raw["kafka"]["settings"] = {"sasl.password": SECRET}
    raw["kafka"]["secrets"] = {"sasl.password": SECRET + "x"}

    error = error_of(raw)

    assert "sasl.password: given in settings and in secrets" in error.message
    assert SECRET not in " ".join(error.details)


def test_a_credential_among_consumer_settings_is_refused() -> None:
    raw = default_raw()
    raw["kafka"]["consumer_settings"] = {"sasl.password": SECRET}

    error = error_of(raw)

    assert error.field == "kafka"
    assert "consumer_settings.sasl.password: a credential" in error.message
    assert SECRET not in " ".join(error.details)


def test_numeric_and_odd_passwords_from_the_environment_stay_verbatim() -> None:
    config = load_config(
        environ={
            "SCORER_REDIS__PASSWORD": "0123",
            "SCORER_RDKAFKA_SASL_PASSWORD": "*alias: yes",
        }
    )

    assert config.redis.password is not None
    assert config.redis.password.get_secret_value() == "0123"
    assert config.kafka.secrets["sasl.password"].get_secret_value() == "*alias: yes"


def test_a_password_in_the_redis_url_moves_out_of_it() -> None:
    config = load_config(
        environ={"SCORER_REDIS__URL": f"rediss://scorer:{SECRET}%40x@10.0.0.5:6380/2"}
    )

    assert config.redis.url == "rediss://10.0.0.5:6380/2"
    assert config.redis.username == "scorer"
    assert config.redis.password is not None
    assert config.redis.password.get_secret_value() == f"{SECRET}@x"
    assert SECRET not in shown(config)
    pool = redis_client(config).connection_pool
    assert pool.connection_kwargs["password"] == f"{SECRET}@x"
    assert pool.connection_kwargs["username"] == "scorer"


def test_a_url_password_and_a_password_field_are_refused_together() -> None:
    raw = default_raw()
    raw["redis"] = {"url": f"redis://:{SECRET}@h:6379/0", "password": "other"}

    error = error_of(raw)

    assert "url and password both give the password" in error.message
    assert SECRET not in " ".join(error.details)


def test_a_bad_redis_url_is_named_without_echoing_it() -> None:
    raw = default_raw()
    raw["redis"] = {"url": f"http://:{SECRET}@h:6379/0"}

    error = error_of(raw)

    assert error.field == "redis.url"
    assert "rediss://" in error.message
    assert SECRET not in " ".join(error.details)


def test_redis_tls_files_reach_the_client(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "c.pem", "k.pem"))
    for path in (ca, cert, key):
        path.write_text("PEM")
    raw = default_raw()
    raw["redis"] = {
        "url": "rediss://127.0.0.1:6380/0",
        "tls": {"ca_file": str(ca), "cert_file": str(cert), "key_file": str(key)},
    }

    pool = redis_client(parse_config(raw)).connection_pool

    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    assert pool.connection_kwargs["ssl_certfile"] == str(cert)
    assert pool.connection_kwargs["ssl_keyfile"] == str(key)
    assert pool.connection_kwargs["ssl_check_hostname"] is True
    assert pool.connection_class.__name__ == "SSLConnection"


def test_redis_tls_needs_files_that_exist_and_a_rediss_url(tmp_path: Path) -> None:
    raw = default_raw()
    raw["redis"] = {
        "url": "rediss://127.0.0.1:6380/0",
        "tls": {"ca_file": str(tmp_path / "absent.pem")},
    }
    assert error_of(raw).field == "redis.tls.ca_file"

    raw["redis"] = {"url": "redis://127.0.0.1:6380/0", "tls": {}}
    assert "tls needs a rediss:// url" in error_of(raw).message

    raw["redis"] = {"url": "rediss://h:1/0", "tls": {"cert_file": str(tmp_path)}}
    assert error_of(raw).field.startswith("redis.tls")


def test_check_config_never_prints_a_secret(tmp_path: Path) -> None:
    raw = default_raw()
    raw["kafka"]["secrets"] = {"sasl.password": SECRET + "-file"}
    raw["redis"]["url"] = f"redis://scorer:{SECRET}-url@127.0.0.1:6379/0"
    config = tmp_path / "secret.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {
        "SCORER_RDKAFKA_SSL_KEY_PASSWORD": SECRET + "-env",
        "SCORER_RDKAFKA_SASL_USERNAME": "scorer",
    }

    result = run_cli("--log-level", "DEBUG", "check-config", str(config), env=env)

    assert result.returncode == 0, result.stderr
    assert "ok;" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_a_wrong_typed_secret_is_named_not_echoed(tmp_path: Path) -> None:
    raw = default_raw()
    raw["kafka"]["secrets"] = {"sasl.password": [SECRET]}
    raw["redis"]["password"] = {"value": SECRET}
    config = tmp_path / "typed.yaml"
    config.write_text(yaml.safe_dump(raw))

    checked = run_cli("check-config", str(config), env={})
    started = run_cli("run", "--config", str(config), env={})

    for result in (checked, started):
        assert result.returncode != 0
        assert "kafka.secrets.sasl.password" in result.stderr
        assert "redis.password" in result.stderr
        assert SECRET not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_yaml_error_does_not_quote_the_secret_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(
        default_config_path().read_text()
        + f"\nextra:\n  password: *{SECRET}\n  other: 'un {SECRET}\n"
    )

    result = run_cli("check-config", str(config), env={})

    assert result.returncode == 1
    assert "is not valid YAML" in result.stderr
    assert SECRET not in result.stderr


def librdkafka_refusal(overrides: dict[str, str]) -> ConfigError:
    """The error of making a producer with `overrides`; no broker is needed."""
    config = load_config(environ={}, overrides=overrides)
    with (
        pytest.raises(ConfigError) as caught,
        settings_checked_by_librdkafka(config.kafka),
    ):
        Producer(producer_settings(config))
    return caught.value


def test_a_name_librdkafka_does_not_know_in_secrets_blames_secrets() -> None:
    """`run` said kafka.settings for a key that was in kafka.secrets."""
    error = librdkafka_refusal({"kafka.secrets.KafkaPW-key": SECRET})

    assert error.details == [
        'kafka.secrets: librdkafka: No such configuration property: "KafkaPW-key"'
    ]


@pytest.mark.parametrize(
    "section", ["settings", "producer_settings", "consumer_settings"]
)
def test_a_name_librdkafka_does_not_know_names_its_section(section: str) -> None:
    config = load_config(environ={}, overrides={f"kafka.{section}.bogus.name": "1"})
    make = Consumer if section == "consumer_settings" else Producer
    settings = consumer_settings if make is Consumer else producer_settings

    with (
        pytest.raises(ConfigError) as caught,
        settings_checked_by_librdkafka(config.kafka),
    ):
        make(settings(config))

    assert caught.value.field == f"kafka.{section}"


def test_a_secret_librdkafka_refuses_is_named_not_echoed() -> None:
    error = librdkafka_refusal({"kafka.secrets.security.protocol": SECRET})

    assert error.field == "kafka.secrets"
    assert 'configuration property "security.protocol"' in error.message
    assert SECRET not in " ".join(error.details)


def test_secrets_given_whole_from_the_command_line_say_how_to_give_them() -> None:
    """The whole map as one value stayed text: 'Input should be a valid dict'."""
    whole = f"{{sasl.password: {SECRET}, bogus: Y}}"

    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"kafka.secrets": whole})

    assert caught.value.details == [
        "kafka.secrets: a mapping of librdkafka names to values; from the command "
        "line or the environment, give one at a time (--set "
        "kafka.secrets.sasl.password=VALUE, SCORER_RDKAFKA_SASL_PASSWORD=VALUE) "
        "(from the command line)"
    ]


def test_a_setting_named_bare_by_librdkafka_names_its_section(tmp_path: Path) -> None:
    """'ssl.ca.location failed: ...' quotes no property, yet names one."""
    missing = str(tmp_path / "absent-ca.pem")
    overrides = {
        "kafka.settings.security.protocol": "SSL",
        "kafka.settings.ssl.ca.location": missing,
    }

    error = librdkafka_refusal(overrides)

    assert error.field == "kafka.settings"
    assert "ssl.ca.location failed" in error.message


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("linger.ms", "queue.buffering.max.ms"),
        ("compression.type", "compression.codec"),
        ("delivery.timeout.ms", "message.timeout.ms"),
    ],
)
def test_a_setting_given_by_an_alias_names_its_section(
    alias: str, canonical: str
) -> None:
    """librdkafka refuses linger.ms by its other name, queue.buffering.max.ms."""
    error = librdkafka_refusal({f"kafka.producer_settings.{alias}": "abc"})

    assert error.field == "kafka.producer_settings"
    assert f'configuration property "{canonical}"' in error.message
