"""Tests of the schema registry client (scorer/registry.py) and its config."""

import base64
import io
import socket
import urllib.error
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
import yaml
from fake_registry import FakeRegistry, running_registry

from scorer.config import default_config_path, load_config, parse_config
from scorer.errors import ConfigError
from scorer.registry import (
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    SchemaNotFound,
    _refusal,
)

SCHEMA = '{"type":"record","name":"T","fields":[{"name":"a","type":"string"}]}'


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with running_registry() as fake:
        yield fake


class Sleeps(list[float]):
    """Records the delays the client waits instead of waiting them."""

    def __call__(self, delay_s: float) -> None:
        self.append(delay_s)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- requests ------------------------------------------------------------------


def test_a_schema_is_fetched_by_id(registry: FakeRegistry) -> None:
    schema_id = registry.add(SCHEMA)

    found = RegistryClient(registry.url).schema_by_id(schema_id)

    assert (found.schema_id, found.schema, found.schema_type) == (1, SCHEMA, "AVRO")
    assert found.references == ()
    assert (
        registry.requests[0]
        .headers["Accept"]
        .startswith("application/vnd.schemaregistry.v1+json")
    )


def test_an_unknown_id_is_schema_not_found(registry: FakeRegistry) -> None:
    with pytest.raises(SchemaNotFound) as caught:
        RegistryClient(registry.url).schema_by_id(9)

    assert caught.value.status == 404
    assert "error_code=40403" in str(caught.value)


def test_register_posts_the_schema_and_returns_its_id(registry: FakeRegistry) -> None:
    schema_id = RegistryClient(registry.url).register("a.b-value", SCHEMA)

    seen = registry.requests[0]
    assert (seen.method, seen.path) == ("POST", "/subjects/a.b-value/versions")
    assert seen.body == {"schema": SCHEMA}
    assert seen.headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
    assert registry.subjects == {"a.b-value": {SCHEMA: schema_id}}


def test_subjects_are_quoted_in_the_path(registry: FakeRegistry) -> None:
    RegistryClient(registry.url).register("odd/topic name-value", SCHEMA)

    assert registry.requests[0].path == "/subjects/odd%2Ftopic%20name-value/versions"
    assert "odd/topic name-value" in registry.subjects


def test_lookup_finds_only_what_is_registered(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url)
    with pytest.raises(SchemaNotFound):
        client.lookup("t-value", SCHEMA)

    schema_id = client.register("t-value", SCHEMA)

    assert client.lookup("t-value", SCHEMA) == schema_id


def test_basic_auth_is_sent(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url, username="scorer", password="s3cret:x")

    client.register("t-value", SCHEMA)

    expected = base64.b64encode(b"scorer:s3cret:x").decode()
    assert registry.requests[0].headers["Authorization"] == f"Basic {expected}"


def test_no_auth_header_without_a_username(registry: FakeRegistry) -> None:
    RegistryClient(registry.url).register("t-value", SCHEMA)

    assert "Authorization" not in registry.requests[0].headers


def test_the_probe_runs_once(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url)

    client.ensure_reachable()
    client.ensure_reachable()

    assert registry.paths() == ["/schemas/types"]


# -- retries -------------------------------------------------------------------


def test_a_briefly_unavailable_registry_is_asked_again(registry: FakeRegistry) -> None:
    schema_id = registry.add(SCHEMA)
    registry.unavailable = 2
    sleeps = Sleeps()

    found = RegistryClient(registry.url, sleep=sleeps).schema_by_id(schema_id)

    assert found.schema == SCHEMA
    assert sleeps == [0.25, 0.5]
    assert registry.paths() == [f"/schemas/ids/{schema_id}"] * 3


def test_retries_are_bounded_and_the_delays_double(registry: FakeRegistry) -> None:
    registry.unavailable = 100
    sleeps = Sleeps()
    client = RegistryClient(registry.url, retries=6, sleep=sleeps)

    with pytest.raises(RegistryUnavailable) as caught:
        client.schema_by_id(1)

    assert sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert len(registry.requests) == 7
    assert caught.value.status == 503


def test_a_refused_connection_is_unavailable() -> None:
    sleeps = Sleeps()
    client = RegistryClient(f"http://127.0.0.1:{closed_port()}", sleep=sleeps)

    with pytest.raises(RegistryUnavailable) as caught:
        client.schema_by_id(1)

    assert "refused" in str(caught.value).lower()
    assert caught.value.status is None
    assert len(sleeps) == 4


def test_a_refusal_is_not_retried(registry: FakeRegistry) -> None:
    registry.refuse_with = 401
    sleeps = Sleeps()

    with pytest.raises(RegistryError) as caught:
        RegistryClient(registry.url, sleep=sleeps).schema_by_id(1)

    assert not isinstance(caught.value, RegistryUnavailable)
    assert caught.value.status == 401
    assert sleeps == []
    assert len(registry.requests) == 1


# -- configuration ---------------------------------------------------------------


def confluent_raw(**registry_fields: Any) -> dict[str, Any]:
    raw = yaml.safe_load(default_config_path().read_text())
    raw["topics"]["events"][0]["format"] = "confluent_avro"
    if registry_fields:
        raw["schema_registry"] = registry_fields
    assert isinstance(raw, dict)
    return raw


def config_error(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value


def test_a_confluent_topic_without_a_registry_names_the_field() -> None:
    error = config_error(confluent_raw())

    assert error.field == "schema_registry"
    assert error.message == "required: topic web.page_views has format confluent_avro"


@pytest.mark.parametrize(
    "url",
    ["registry:8081", "ftp://registry:8081", "http://", "http://h:8081/?x=1"],
)
def test_a_bad_url_names_the_field(url: str) -> None:
    error = config_error(confluent_raw(url=url))

    assert error.field == "schema_registry.url"


def test_credentials_in_the_url_are_refused() -> None:
    error = config_error(confluent_raw(url="https://user:pw@registry:8081"))

    assert error.field == "schema_registry.url"
    assert "username and password" in error.message
    assert "pw" not in error.message


def test_a_username_needs_a_password() -> None:
    error = config_error(confluent_raw(url="http://r:8081", username="scorer"))

    assert error.field == "schema_registry"
    assert "together" in error.message


def test_registry_settings_and_their_defaults() -> None:
    raw = confluent_raw(url="http://registry:8081/", username="u", password="p")

    settings = parse_config(raw).schema_registry

    assert settings is not None
    assert settings.url == "http://registry:8081"
    assert settings.subject_strategy == "topic"
    assert settings.auto_register is True
    assert settings.password is not None
    assert "p" not in repr(settings.password)
    assert settings.password.get_secret_value() == "p"


def test_the_registry_is_optional_while_no_topic_uses_it() -> None:
    config = load_config(environ={})

    assert config.schema_registry is None


def test_the_environment_sets_the_registry(tmp_path: Any) -> None:
    path = tmp_path / "scorer.yaml"
    path.write_text(yaml.safe_dump(confluent_raw()))

    config = load_config(
        path,
        environ={
            "SCORER_SCHEMA_REGISTRY__URL": "https://registry.internal:8081",
            "SCORER_SCHEMA_REGISTRY__AUTO_REGISTER": "false",
        },
    )

    assert config.schema_registry is not None
    assert config.schema_registry.url == "https://registry.internal:8081"
    assert config.schema_registry.auto_register is False


def test_a_page_that_is_no_registry_answer_is_quoted_on_one_line() -> None:
    page = (
        b"<!DOCTYPE html>\n<html>\n<head>\n<title>Error 404</title>\n</head>\n</html>\n"
    )
    refused = urllib.error.HTTPError(
        "http://127.0.0.1:1/schemas/ids/1",
        404,
        "Not Found",
        Message(),
        io.BytesIO(page),
    )

    error = _refusal("GET", "/schemas/ids/1", refused)

    assert str(error) == (
        "GET /schemas/ids/1: HTTP 404: <!DOCTYPE html> <html> <head> "
        "<title>Error 404</title> </head> </html>"
    )
