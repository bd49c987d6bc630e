"""Security settings work end to end, and nothing secret or personal leaks.

A broker with a SASL_SSL listener (SCRAM-SHA-512, a certificate from a
throwaway CA) and redis-servers with an ACL user or TLS are started here; the
scorer runs as `scorer run` in a subprocess, as in production, and every byte
it writes (stdout, stderr at DEBUG, /metrics) is searched for the secrets and
for the personal data the input carries.
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import TopicReader, produce

from scorer.config import default_config_path, parse_config
from scorer.events import format_time
from scorer.replay import Line, Replay
from scorer.sandbox import free_ports
from scorer.sandbox.kafka import KafkaBroker
from scorer.sandbox.redis import RedisServer
from scorer.sandbox.tls import CertificateAuthority, IssuedCertificate
from scorer.wire import JsonCodec, make_codec

# Every test here starts servers, some without the conftest fixtures.
pytestmark = pytest.mark.integration

T0_MS = 1_750_000_000_000
WAIT_S = 90.0
KAFKA_USER = "scorer"
KAFKA_PASSWORD = "kafka-Pw-7f3a9c"
REDIS_USER = "scorer"
REDIS_PASSWORD = "redis-Pw-51e2d0"
SECRETS = (KAFKA_PASSWORD, REDIS_PASSWORD)
SECURE = "SECURE"  # the name of the broker's SASL_SSL listener
JSON = JsonCodec()


@dataclass(frozen=True, slots=True)
class Certificates:
    ca: Path
    broker: IssuedCertificate
    redis: IssuedCertificate
    client: IssuedCertificate


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    authority = CertificateAuthority.create(tmp_path_factory.mktemp("tls"))
    return Certificates(
        authority.cert_file,
        authority.issue("broker"),
        authority.issue("redis"),
        authority.issue("client"),
    )


@pytest.fixture(scope="module")
def secure_kafka(certificates: Certificates) -> Iterator[KafkaBroker]:
    """A broker whose SECURE listener takes SASL_SSL with SCRAM-SHA-512 only."""
    listener = f"listener.name.{SECURE.lower()}"
    properties = {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        f"{listener}.ssl.keystore.type": "PEM",
        f"{listener}.ssl.keystore.location": str(certificates.broker.bundle_file),
        f"{listener}.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
    }
    # KRaft takes SCRAM credentials only when the storage is formatted.
    user = f"SCRAM-SHA-512=[name={KAFKA_USER},password={KAFKA_PASSWORD}]"
    with KafkaBroker(
        extra_listeners={SECURE: "SASL_SSL"},
        extra_properties=properties,
        format_args=["--add-scram", user],
    ) as broker:
        yield broker


# -- the scorer as a process --------------------------------------------------


@dataclass(slots=True)
class Run:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(
            errors="replace"
        )


@contextmanager
def scorer_run(
    config: Path, env: dict[str, str], work: Path, *flags: str
) -> Iterator[Run]:
    """`scorer run` in a subprocess; stopped with SIGTERM at the end."""
    stdout, stderr = work / "stdout.log", work / "stderr.log"
    command = [sys.executable, "-m", "scorer.cli", *flags, "run", "--config"]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [*command, str(config)],
            stdout=out,
            stderr=err,
            env={**os.environ, **env},
        )
    run = Run(process, stdout, stderr)
    try:
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def stop(run: Run) -> int:
    run.process.send_signal(signal.SIGTERM)
    return run.process.wait(WAIT_S)


def write_config(path: Path, **sections: Any) -> Path:
    raw = yaml.safe_load(default_config_path().read_text())
    raw.update(sections)
    path.write_text(yaml.safe_dump(raw))
    return path


def topics_section(broker: KafkaBroker) -> tuple[dict[str, Any], list[str]]:
    names = [f"{kind}-{uuid.uuid4().hex[:10]}" for kind in ("pages", "out", "dlq")]
    broker.create_topics(dict.fromkeys(names, 2))
    pages, out, dlq = names
    section = {
        "events": [{"name": pages, "format": "json"}],
        "output": {"name": out, "format": "json"},
        "dead_letter": dlq,
    }
    return section, names


def secure_kafka_section(
    broker: KafkaBroker, certificates: Certificates, **extra: Any
) -> dict[str, Any]:
    return {
        "bootstrap_servers": f"127.0.0.1:{broker.listener_port(SECURE)}",
        "group_id": f"secure-{uuid.uuid4().hex[:8]}",
        "settings": {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": KAFKA_USER,
            "ssl.ca.location": str(certificates.ca),
        },
        **extra,
    }


def page_views(count: int) -> list[dict[str, Any]]:
    urls = ("/pricing", "/demo", "/blog/x", "/")
    return [
        {
            "event_id": f"sec-{n}",
            "lead_id": f"L{n % 5}",
            "type": "page_view",
            "occurred_at": format_time(T0_MS + n * 60_000),
            "url": urls[n % len(urls)],
        }
        for n in range(count)
    ]


def replayed(config_path: Path, records: list[dict[str, Any]]) -> list[Any]:
    """The outputs `scorer replay` gives for `records`."""
    raw = yaml.safe_load(config_path.read_text())
    raw["redis"], raw["kafka"] = {}, {}
    replay = Replay(parse_config(raw), errors=io.StringIO())
    lines = [Line("in", n, json.dumps(r).encode()) for n, r in enumerate(records, 1)]
    out = io.BytesIO()
    replay.run(lines, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def score_through(
    broker: KafkaBroker, config: Path, env: dict[str, str], work: Path, names: list[str]
) -> tuple[list[Any], str, str]:
    """Run the scorer on a few events; (outputs, everything it wrote, /metrics)."""
    pages, out, _dlq = names
    events = page_views(12)
    expected = replayed(config, events)
    produce(broker.bootstrap_servers, pages, events, JSON)

    reader = TopicReader(broker.bootstrap_servers, out, JSON)
    metrics_port = yaml.safe_load(config.read_text())["metrics"]["port"]
    with scorer_run(config, env, work, "--log-level", "DEBUG") as run:
        reader.read_until(lambda messages: len(messages) >= len(expected))
        metrics = fetch(f"http://127.0.0.1:{metrics_port}/metrics")
        assert stop(run) == 0, run.output()
    outputs = reader.decoded()
    reader.close()

    assert sorted_by_source(outputs) == sorted_by_source(expected)
    return outputs, run.output(), metrics


def sorted_by_source(events: list[Any]) -> list[Any]:
    return sorted(events, key=lambda e: (e["lead_id"], e["event_id"]))


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# -- Kafka SASL_SSL, Redis ACL and TLS ----------------------------------------


def test_sasl_ssl_and_a_redis_acl_user_with_secrets_from_the_environment(
    secure_kafka: KafkaBroker, certificates: Certificates, tmp_path: Path
) -> None:
    topics, names = topics_section(secure_kafka)
    with RedisServer(username=REDIS_USER, password=REDIS_PASSWORD) as redis_server:
        config = write_config(
            tmp_path / "env.yaml",
            kafka=secure_kafka_section(secure_kafka, certificates),
            redis={
                "url": f"redis://127.0.0.1:{redis_server.port}/0",
                "username": REDIS_USER,
            },
            topics=topics,
            metrics={"port": free_ports(1)[0]},
        )
        env = {
            "SCORER_RDKAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
            "SCORER_REDIS__PASSWORD": REDIS_PASSWORD,
        }
        outputs, written, metrics = score_through(
            secure_kafka, config, env, tmp_path, names
        )
        checked = check_config(config, env)
        client = redis_server.client()
        stored = client.keys("scorer:*")
        client.close()

    assert {e["lead_id"] for e in outputs} == {f"L{n}" for n in range(5)}
    # Three keys for each of the five leads, and the rules announcement.
    assert len(stored) == 16 and b"scorer:rules" in stored
    assert "scorer started" in written and " DEBUG " in written
    assert "scorer_records_total" in metrics
    assert_no_secret(written, metrics, checked)


def test_sasl_ssl_and_redis_over_tls_with_secrets_in_the_file(
    secure_kafka: KafkaBroker, certificates: Certificates, tmp_path: Path
) -> None:
    topics, names = topics_section(secure_kafka)
    client_cert = certificates.client
    with RedisServer(password=REDIS_PASSWORD, tls=certificates.redis) as redis_server:
        config = write_config(
            tmp_path / "file.yaml",
            kafka=secure_kafka_section(
                secure_kafka, certificates, secrets={"sasl.password": KAFKA_PASSWORD}
            ),
            redis={
                "url": f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/0",
                "tls": {
                    "ca_file": str(certificates.ca),
                    "cert_file": str(client_cert.cert_file),
                    "key_file": str(client_cert.key_file),
                },
            },
            topics=topics,
            metrics={"port": free_ports(1)[0]},
        )
        outputs, written, metrics = score_through(
            secure_kafka, config, {}, tmp_path, names
        )
        checked = check_config(config, {})
        client = redis_server.client()
        stored = client.keys("scorer:*")
        client.close()

    assert {e["lead_id"] for e in outputs} == {f"L{n}" for n in range(5)}
    assert len(stored) == 16 and b"scorer:rules" in stored
    assert "scorer started" in written
    assert_no_secret(written, metrics, checked)


def check_config(config: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "scorer.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_a_wrong_kafka_password_is_reported_without_any_password(
    secure_kafka: KafkaBroker,
    certificates: Certificates,
    redis_url: str,
    tmp_path: Path,
) -> None:
    topics, _names = topics_section(secure_kafka)
    wrong = "wrong-Pw-0d9e4b"
    config = write_config(
        tmp_path / "wrong.yaml",
        kafka=secure_kafka_section(secure_kafka, certificates),
        redis={"url": redis_url},
        topics=topics,
        metrics={"port": None},
    )
    env = {"SCORER_RDKAFKA_SASL_PASSWORD": wrong}

    with scorer_run(config, env, tmp_path, "--log-level", "DEBUG") as run:
        deadline = time.monotonic() + WAIT_S
        while "Authentication failed" not in run.output():
            assert run.process.poll() is None, run.output()
            assert time.monotonic() < deadline, run.output()
            time.sleep(0.1)
        stop(run)

    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in run.output()
    assert wrong not in run.output()
    assert_no_secret(run.output())


def test_a_wrong_redis_password_stops_start_up_without_any_password(
    tmp_path: Path,
) -> None:
    wrong = "wrong-Pw-a81c33"
    with RedisServer(username=REDIS_USER, password=REDIS_PASSWORD) as redis_server:
        config = write_config(
            tmp_path / "wrong.yaml",
            redis={
                "url": f"redis://{REDIS_USER}:{wrong}@127.0.0.1:{redis_server.port}"
            },
            metrics={"port": None},
        )
        result = subprocess.run(
            [sys.executable, "-m", "scorer.cli", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
            timeout=WAIT_S,
        )

    assert result.returncode == 1
    assert "invalid username-password pair" in result.stderr
    assert "Traceback" not in result.stderr
    assert wrong not in result.stdout + result.stderr


# -- personal data ------------------------------------------------------------

NAME = "Jane Doe"
EMAIL = "jane.doe@example.com"
PERSONAL = (NAME, EMAIL, "Jane", "Doe", "example.com")


def personal_records() -> tuple[list[Any], list[Any], list[bytes], list[bytes]]:
    """Good events, good firmographics, bad JSON values, bad Avro values."""
    events = [
        {
            "event_id": f"p-{n}",
            "lead_id": f"lead-{n % 3}",
            "type": "page_view",
            "occurred_at": format_time(T0_MS + n * 1000),
            "url": f"/pricing?contact={EMAIL}",
            "referrer": f"mailto:{EMAIL}",
            "category": NAME,
        }
        for n in range(6)
    ]
    events.append(
        {
            "event_id": "p-dl",
            "lead_id": "lead-0",
            "type": "content_download",
            "occurred_at": format_time(T0_MS + 9000),
            "asset_id": f"whitepaper-for-{EMAIL}",
            "asset_type": "whitepaper",
        }
    )
    profiles = [
        firmographic(f"lead-{n}", company=f"{NAME} Consulting", title=f"{NAME}, VP")
        for n in range(3)
    ]
    template = events[0]
    bad_json = [
        json.dumps({**template, "type": EMAIL}).encode(),
        json.dumps({**template, "lead_id": 5, "url": EMAIL}).encode(),
        json.dumps({**template, "occurred_at": f"{NAME} {EMAIL}"}).encode(),
        json.dumps({**template, "event_id": EMAIL * 20}).encode(),
        json.dumps({**template, "url": None, "category": EMAIL}).encode(),
        f'{{"lead_id": "{EMAIL}", "type": "page_view", "url": "{NAME}'.encode(),
        json.dumps({**template, "url": f"{NAME}\\ud800"})
        .encode()
        .replace(b"\\\\ud800", b"\\ud800"),
        json.dumps(profiles[0] | {"employees": NAME}).encode(),
    ]
    avro = make_codec("avro", schema_name="leadscorer.events.PageView")
    good_avro = avro.encode({**template, "category": None, "referrer": None})
    bad_avro = [
        avro.encode({**template, "type": EMAIL}),
        avro.encode({**template, "url": "x" * 5000 + EMAIL}),
        good_avro.replace(b"/pricing?contact=", b"\xff" * 17),
        good_avro[:-5],
    ]
    return events, profiles, bad_json, bad_avro


def firmographic(lead: str, **fields: Any) -> dict[str, Any]:
    return {
        "lead_id": lead,
        "type": "firmographics",
        "company": None,
        "employees": 500,
        "industry": "software",
        "title": None,
        "country": "DE",
        "updated_at": format_time(T0_MS),
        **fields,
    }


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_name_or_email_of_a_lead_reaches_the_logs(
    kafka_bootstrap: str,
    redis_url: str,
    fresh_topics: Any,
    tmp_path: Path,
    log_format: str,
) -> None:
    pages, avro_pages, firmo, out, dlq = fresh_topics(
        "pages", "avro", "firmo", "out", "dlq"
    )
    config = write_config(
        tmp_path / "pii.yaml",
        kafka={"bootstrap_servers": kafka_bootstrap, "group_id": uuid.uuid4().hex},
        redis={"url": redis_url, "key_prefix": f"pii{uuid.uuid4().hex[:6]}"},
        topics={
            "events": [
                {"name": pages, "format": "json"},
                {"name": avro_pages, "format": "avro"},
            ],
            "firmographics": {"name": firmo, "format": "json"},
            "output": {"name": out, "format": "json"},
            "dead_letter": dlq,
        },
        metrics={"port": None},
        logging={"level": "DEBUG", "format": log_format},
    )
    events, profiles, bad_json, bad_avro = personal_records()
    produce(kafka_bootstrap, firmo, profiles, JSON)
    produce(kafka_bootstrap, pages, events, JSON)
    keys = ["lead-x"] * len(bad_json)
    produce(kafka_bootstrap, pages, [], None, keys=keys, raw_values=bad_json)
    keys = ["lead-y"] * len(bad_avro)
    produce(kafka_bootstrap, avro_pages, [], None, keys=keys, raw_values=bad_avro)
    expected_outputs = len(replayed(config, [*profiles, *events]))

    outputs = TopicReader(kafka_bootstrap, out, JSON)
    letters = TopicReader(kafka_bootstrap, dlq, None)
    with scorer_run(config, {}, tmp_path) as run:
        letters.read_until(lambda got: len(got) >= len(bad_json) + len(bad_avro))
        outputs.read_until(lambda got: len(got) >= expected_outputs)
        assert stop(run) == 0, run.output()
    outputs.close()
    letters.close()

    # The dead letters carry the personal data, so the scan below could fail.
    assert sum(EMAIL.encode() in m.value() for m in letters.messages) >= 8
    written = run.output()
    assert written.count("dead-lettered") == len(bad_json) + len(bad_avro)
    assert "DEBUG" in written
    found = [word for word in PERSONAL if word.lower() in written.lower()]
    assert found == []
