"""What `scorer sandbox` prints for the other terminal, and of a stopped server."""

import io
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scorer import logs
from scorer.config import load_config
from scorer.errors import ScorerError
from scorer.sandbox import _ending, stack
from scorer.sandbox.stack import instructions


@pytest.mark.parametrize(
    ("typed", "shown"),
    [(".venv/bin/scorer", ".venv/bin/scorer"), ("/x/scorer/cli/__main__.py", "scorer")],
)
def test_the_commands_repeat_the_program_and_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, typed: str, shown: str
) -> None:
    monkeypatch.setattr("sys.argv", [typed, "sandbox"])
    monkeypatch.chdir(tmp_path)

    text = instructions("127.0.0.1:9", "redis://127.0.0.1:7/0", ["t"], Path("c.yaml"))

    # Absolute: the other terminal need not be in this directory.
    flags = f"--config {tmp_path / 'c.yaml'} --bootstrap-servers 127.0.0.1:9"
    assert f"  {shown} run {flags} --redis-url redis://127.0.0.1:7/0" in text
    assert f"  {shown} produce {flags} records.jsonl" in text
    assert f"  {shown} watch {flags} --from-beginning" in text


def test_the_commands_repeat_the_overrides_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["scorer", "sandbox"])
    settings = ["topics.output.name=x", "kafka.group_id=a b"]

    text = instructions("h:9", "redis://h:7/0", ["x"], None, settings)

    flags = "--set topics.output.name=x --set 'kafka.group_id=a b'"
    assert f"  scorer produce {flags} --bootstrap-servers h:9 records.jsonl" in text


@pytest.mark.parametrize(
    ("exit_code", "shown"),
    [
        (0, "exit_code=0"),
        (143, "exit_code=143 (shut down on SIGTERM)"),
        (1, "exit_code=1"),
        (-9, "signal=SIGKILL"),
        (-15, "signal=SIGTERM"),
        (None, "exit_code=unknown"),
    ],
)
def test_a_stopped_servers_ending_reads_as_what_happened(
    exit_code: int | None, shown: str
) -> None:
    # The JVM's 143 after SIGTERM is a clean stop, not a failure.
    assert _ending(exit_code) == shown


def test_redis_starts_before_kafka_so_a_missing_redis_server_is_said_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []

    def server(kind: str) -> Callable[[], object]:
        def start() -> object:
            started.append(kind)
            raise ScorerError(f"{kind} not found on PATH")

        return start

    monkeypatch.setattr(stack, "RedisServer", server("redis-server"))
    monkeypatch.setattr(stack, "KafkaBroker", server("kafka"))

    with pytest.raises(ScorerError, match="redis-server not found"):
        stack.serve(load_config(environ={}), threading.Event(), print)

    assert started == ["redis-server"]


class EndedServer:
    kind, pid = "redis", 4242

    def ended(self) -> str | None:
        return "signal=SIGKILL"


def test_a_server_that_ended_is_logged_with_its_signal_as_a_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("INFO", json_lines=True, stream=stream)
    monkeypatch.setattr(stack, "WATCH_EVERY_S", 0.01)
    stop = threading.Event()
    said: list[str] = []
    try:
        timer = threading.Timer(0.2, stop.set)
        timer.start()
        servers: list[Any] = [EndedServer()]  # stands for a LocalServer
        lost = stack._watch(stop, servers, said.append)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    assert lost == ["redis"]
    document = json.loads(stream.getvalue().splitlines()[0])
    assert (document["pid"], document["signal"]) == ("4242", "SIGKILL")
