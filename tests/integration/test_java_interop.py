"""The wire format, checked against the reference Java implementations.

A Java service that produces the scorer's events or reads its outputs uses
Apache Avro's Java library (single-object encoding, schema fingerprints)
and Kafka's Java producer (key placement). `tests/java/AvroInterop.java` is
compiled here against both (Avro fetched by `mvn` from `tests/java/pom.xml`,
kafka-clients from the broker's jars) and asked what it makes of the
scorer's messages, and the scorer of its messages. No server is started.
"""

import io
import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastavro import json_reader, json_writer
from harness import java_partition

from scorer.config import default_config_path, parse_config
from scorer.replay import Line, Replay
from scorer.sandbox.kafka import ensure_kafka_jars
from scorer.sandbox.maven import Artifact, default_cache_dir, fetch, pom_property
from scorer.wire import (
    HEADER_BYTES,
    SCORE_SCHEMA,
    SINGLE_OBJECT_MARKER,
    AvroCodec,
    SchemaCatalog,
    SchemaVersion,
)

JAVA_DIR = Path(__file__).resolve().parents[1] / "java"
POM = JAVA_DIR / "pom.xml"
AVRO_JARS = Artifact(
    what="Apache Avro's Java library",
    pom=POM,
    goal="dependency:copy-dependencies",
    mvn_hint="install Maven (Debian: maven) to fetch Apache Avro's jars",
    complete=lambda libs: any(libs.glob("avro-*.jar")),
)
JAVA_TIMEOUT_S = 120.0

SAMPLES: list[dict[str, Any]] = [
    {
        "event_id": "pv-1",
        "lead_id": "lead-ü-1",
        "type": "page_view",
        "occurred_at": "2026-11-02T09:15:00.250Z",
        "url": "https://example.com/pricing?plan=team",
    },
    {
        "event_id": "dl-1",
        "lead_id": "lead-2",
        "type": "content_download",
        "occurred_at": "2026-11-02T09:16:00Z",
        "asset_id": "whitepaper-data-quality",
        "asset_type": "whitepaper",
    },
    {
        "event_id": "wb-1",
        "lead_id": "lead-3",
        "type": "webinar",
        "occurred_at": "2026-11-02T10:00:00Z",
        "webinar_id": "w-42",
        "status": "attended",
        "minutes_watched": 37,
    },
    {
        "lead_id": "lead-3",
        "type": "firmographics",
        "company": "Example GmbH",
        "employees": 420,
        "industry": "Software",
        "title": "VP Marketing",
        "country": "DE",
        "updated_at": "2026-11-01T00:00:00Z",
    },
]


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="module")
def java(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The command that runs AvroInterop, compiled for this module."""
    version = pom_property(POM, "avro.version")
    avro = fetch(AVRO_JARS, default_cache_dir() / f"avro-{version}" / "libs", version)
    clients = sorted(ensure_kafka_jars().glob("kafka-clients-*.jar"))
    assert clients, "the broker's jars hold no kafka-clients jar"
    classpath = [str(avro / "*"), str(clients[0])]

    classes = tmp_path_factory.mktemp("java-interop")
    source = str(JAVA_DIR / "AvroInterop.java")
    javac = ["javac", "-cp", ":".join(classpath), "-d", str(classes), source]
    subprocess.run(javac, check=True, timeout=JAVA_TIMEOUT_S)
    yield ["java", "-cp", ":".join([str(classes), *classpath]), "AvroInterop"]


def ask(java: list[str], *args: str, lines: list[str]) -> list[str]:
    """Run one mode of AvroInterop: a line of answer per line of input."""
    done = subprocess.run(
        [*java, *args],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=JAVA_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def writers(catalog: SchemaCatalog) -> list[SchemaVersion]:
    """Every schema file the scorer reads, older versions included."""
    by_path = {w.path: w for w, _ in catalog.pairs().values()}
    return [by_path[path] for path in sorted(by_path)]


def writer_of(catalog: SchemaCatalog, message: bytes) -> SchemaVersion:
    """The schema a single-object message names in its header."""
    found = catalog.lookup(message[len(SINGLE_OBJECT_MARKER) : HEADER_BYTES])
    assert found is not None, message[:HEADER_BYTES].hex()
    return found[0]


def avro_json(schema: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    """`record` in Avro's JSON encoding (unions tagged with their branch)."""
    out = io.StringIO()
    json_writer(out, dict(schema), [dict(record)])
    return out.getvalue().strip()


def from_avro_json(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    (record,) = list(json_reader(io.StringIO(text), dict(schema)))
    return dict(record)


def test_java_computes_every_fingerprint_the_scorer_reads_by(
    java: list[str], catalog: SchemaCatalog
) -> None:
    files = writers(catalog)
    answers = ask(java, "fingerprint", *[str(w.path) for w in files], lines=[])

    assert len(files) >= 6  # every record, and page_view's older version
    assert answers == [w.fingerprint.hex() for w in files]


def test_java_reads_every_version_the_scorer_writes_and_writes_the_same_bytes(
    java: list[str], catalog: SchemaCatalog
) -> None:
    inputs = AvroCodec(catalog)
    messages = [inputs.encode(sample) for sample in SAMPLES]
    outputs = scored(SAMPLES)
    assert len(outputs) >= 3  # a score change for each scored event
    messages += [AvroCodec(catalog, SCORE_SCHEMA).encode(o) for o in outputs]

    for message in messages:
        writer = writer_of(catalog, message)

        (text,) = ask(java, "decode", str(writer.path), lines=[message.hex()])
        (again,) = ask(java, "encode", str(writer.path), lines=[text])

        assert bytes.fromhex(again) == message
        assert from_avro_json(writer.parsed, text)["lead_id"] in {
            sample["lead_id"] for sample in SAMPLES
        }


def test_the_scorer_reads_what_java_writes_in_every_schema_version(
    java: list[str], catalog: SchemaCatalog
) -> None:
    codec = AvroCodec(catalog)
    newest = {}
    for sample in SAMPLES:
        message = codec.encode(sample)
        newest[writer_of(catalog, message).full_name] = codec.decode(message)
    checked = 0

    for writer in writers(catalog):
        if writer.full_name not in newest:
            continue  # the output schema: read by Java above, not by the scorer
        reader = catalog.newest(writer.full_name)
        assert reader is not None
        record = newest[writer.full_name]
        written = {f["name"]: record[f["name"]] for f in writer.parsed["fields"]}

        (hexed,) = ask(
            java, "encode", str(writer.path), lines=[avro_json(writer.parsed, written)]
        )
        message = bytes.fromhex(hexed)

        assert message[:HEADER_BYTES] == SINGLE_OBJECT_MARKER + writer.fingerprint
        defaults = {
            f["name"]: f["default"] for f in reader.parsed["fields"] if "default" in f
        }
        assert codec.decode(message) == {**defaults, **written}
        checked += 1

    assert checked == len(writers(catalog)) - 1


def test_java_places_every_lead_where_the_scorer_expects_it(java: list[str]) -> None:
    keys = [f"lead-{n}" for n in range(200)]
    keys += ["", "Ü", "日本-lead", "lead-😀", "visitor:3e64271adf0b99a6", "x" * 301]

    for partitions in (1, 3, 12):
        answers = ask(java, "partition", str(partitions), lines=keys)
        expected = [java_partition(key.encode(), partitions) for key in keys]
        assert [int(a) for a in answers] == expected


def scored(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The output events `scorer replay` gives for `samples`, default rules."""
    config = parse_config(yaml.safe_load(default_config_path().read_text()))
    lines = (Line("samples", n, json.dumps(s).encode()) for n, s in enumerate(samples))
    out = io.BytesIO()
    Replay(config, errors=io.StringIO()).run(lines, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_avro_json_of_a_sample_reads_back(catalog: SchemaCatalog) -> None:
    # The helpers above must not hide a difference by losing fields.
    codec = AvroCodec(catalog)
    message = codec.encode(SAMPLES[2])
    record, writer = codec.decode(message), writer_of(catalog, message)
    text = avro_json(writer.parsed, record)
    assert json.loads(text)["minutes_watched"] == 37
    assert from_avro_json(writer.parsed, text) == record
