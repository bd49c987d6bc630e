"""What `scorer sandbox` prints for the other terminal."""

from pathlib import Path

import pytest

from scorer.sandbox.stack import instructions


@pytest.mark.parametrize(
    ("typed", "shown"),
    [(".venv/bin/scorer", ".venv/bin/scorer"), ("/x/scorer/cli.py", "scorer")],
)
def test_the_commands_repeat_the_program_and_the_config(
    monkeypatch: pytest.MonkeyPatch, typed: str, shown: str
) -> None:
    monkeypatch.setattr("sys.argv", [typed, "sandbox"])

    text = instructions("127.0.0.1:9", "redis://127.0.0.1:7/0", ["t"], Path("c.yaml"))

    flags = "--config c.yaml --bootstrap-servers 127.0.0.1:9"
    assert f"  {shown} run {flags} --redis-url redis://127.0.0.1:7/0" in text
    assert f"  {shown} produce {flags} RECORDS.jsonl" in text


def test_the_commands_repeat_the_overrides_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["scorer", "sandbox"])
    settings = ["topics.output.name=x", "kafka.group_id=a b"]

    text = instructions("h:9", "redis://h:7/0", ["x"], None, settings)

    flags = "--set topics.output.name=x --set 'kafka.group_id=a b'"
    assert f"  scorer produce {flags} --bootstrap-servers h:9 RECORDS.jsonl" in text
