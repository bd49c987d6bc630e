"""User mistakes on the command line end in a short message, never a traceback.

A bad config stops `scorer run` and `scorer check-config` with the field's
name; a bad flag names the flag. The commands run as a user runs them, in a
subprocess: what counts is the exit code and what reaches the terminal, and a
traceback there is a failure.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from command import scorer as run

from scorer.config import default_config_path

Breakage = Callable[[dict[str, Any]], None]


def unknown_field(raw: dict[str, Any]) -> None:
    raw["scoring"]["mql"]["treshold"] = 50


def negative_half_life(raw: dict[str, Any]) -> None:
    raw["scoring"]["half_life"] = "-3d"


def negative_rule_half_life(raw: dict[str, Any]) -> None:
    raw["scoring"]["engagement_rules"][3]["half_life"] = -86400


def unreachable_threshold(raw: dict[str, Any]) -> None:
    raw["scoring"]["mql"]["threshold"] = 100_000


def duplicate_rule_names(raw: dict[str, Any]) -> None:
    raw["scoring"]["engagement_rules"][0]["name"] = "pricing_page"


# What each breakage does, and the words stderr must hold that name it.
CASES: dict[str, tuple[Breakage, list[str]]] = {
    "unknown field": (unknown_field, ["scoring.mql.treshold", "unknown field"]),
    "negative half-life": (
        negative_half_life,
        ["scoring.half_life", "greater than 0"],
    ),
    "negative rule half-life": (
        negative_rule_half_life,
        ["scoring.engagement_rules.3.half_life", "greater than 0"],
    ),
    "unreachable threshold": (
        unreachable_threshold,
        ["mql.threshold 100000 cannot be reached"],
    ),
    "duplicate rule names": (
        duplicate_rule_names,
        ["duplicate rule names: pricing_page"],
    ),
}


def broken_config(tmp_path: Path, breakage: Breakage) -> Path:
    raw = yaml.safe_load(default_config_path().read_text())
    breakage(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_refuses_to_start_and_names_the_field(tmp_path: Path, case: str) -> None:
    breakage, words = CASES[case]
    config = broken_config(tmp_path, breakage)

    result = run("run", "--config", str(config))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("config error: ")
    for word in words:
        assert word in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_config_names_the_field(tmp_path: Path, case: str) -> None:
    breakage, words = CASES[case]
    config = broken_config(tmp_path, breakage)

    result = run("check-config", str(config))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{config}: ")
    for word in words:
        assert word in result.stderr
    assert "ok;" not in result.stdout


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run("run", "--config", str(tmp_path / "absent.yaml"))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "cannot read" in result.stderr and "absent.yaml" in result.stderr


def test_a_config_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("scoring: {version: [x\n")

    result = run("check-config", str(config))

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "is not valid YAML" in result.stderr and "line 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_log_level_is_refused_with_the_choices() -> None:
    result = run("--log-level", "LOUD", "check-config", str(default_config_path()))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --log-level: invalid choice: 'LOUD'" in result.stderr
    assert "'DEBUG', 'INFO', 'WARNING', 'ERROR'" in result.stderr
    assert result.stdout == ""


def test_a_log_level_may_be_written_in_lower_case() -> None:
    result = run("--log-level", "debug", "check-config", str(default_config_path()))

    assert result.returncode == 0, result.stderr
    assert "ok;" in result.stdout


@pytest.mark.parametrize(
    ("as_of", "problem"),
    [
        ("yesterday", "is not an RFC 3339 time with a zone"),
        ("2026-11-05", "is not an RFC 3339 time with a zone"),
        ("2026-11-05T00:00:00", "has no time zone"),
        ("2026-11-05T00:00:00.000", "has no time zone"),
    ],
)
def test_a_bad_as_of_names_the_flag_once_and_the_value(
    tmp_path: Path, as_of: str, problem: str
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")

    result = run("replay", "--as-of", as_of, str(events))

    assert result.returncode == 2
    assert result.stderr == (
        f"error: --as-of: {as_of!r} {problem} (e.g. 2026-11-05T00:00:00Z)\n"
    )
    assert result.stdout == ""


def test_a_binary_config_file_is_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "binary.yaml"
    config.write_bytes(bytes(range(256)) * 8)

    checked = run("check-config", str(config))
    replayed = run("replay", "--config", str(config), str(config))

    assert checked.returncode == 1
    assert checked.stderr.count("\n") == 1
    assert f"{config} is not UTF-8 text" in checked.stderr
    assert replayed.returncode == 2
    assert replayed.stderr.startswith("config error: ")
    assert replayed.stderr.count("\n") == 1
    assert "Traceback" not in checked.stderr + replayed.stderr


@pytest.mark.parametrize("speed", ["-1", "0", "nan", "inf"])
def test_the_demo_refuses_a_speed_that_is_not_above_0(speed: str) -> None:
    result = run("demo", "--speed", speed)

    assert result.returncode == 2
    assert result.stderr.endswith(
        f"scorer demo: error: argument --speed: {speed!r} is not a finite number "
        "above 0\n"
    )
    assert result.stdout == ""


def test_the_demo_refuses_a_data_folder_that_is_not_there(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    empty = tmp_path / "empty"
    empty.mkdir()

    missing = run("demo", "--data", str(absent))
    without_dataset = run("demo", "--data", str(empty))

    # Refused before any server starts: nothing at all on stdout.
    assert missing.returncode == without_dataset.returncode == 2
    assert missing.stderr == f"error: --data: {absent}: no such folder\n"
    assert without_dataset.stderr == (
        f"error: --data: {empty} holds no x_education_leads/Leads_dev70.csv\n"
    )
    assert missing.stdout == without_dataset.stdout == ""


def test_a_reader_that_goes_away_ends_the_output_without_a_traceback() -> None:
    log = Path(__file__).parents[2] / "examples" / "access_log" / "apache_logs"
    command = [sys.executable, "-m", "scorer.cli", "import-access-log", str(log)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as writer:
        assert writer.stdout is not None and writer.stderr is not None
        first = writer.stdout.readline()
        writer.stdout.close()  # as `| head -1` does
        errors = writer.stderr.read().decode()
        code = writer.wait(timeout=60)

    assert first.startswith(b'{"event_id"')
    assert "Traceback" not in errors and "BrokenPipeError" not in errors
    assert code == 1


def test_calibrate_validates_settings_without_a_config_file(tmp_path: Path) -> None:
    outputs, labels = tmp_path / "outputs.jsonl", tmp_path / "labels.csv"
    outputs.write_text("")
    labels.write_text("lead_id,converted\nL1,1\n")
    common = ("calibrate", "--outputs", str(outputs), "--labels", str(labels))

    result = run(*common, "--set", "foo.bar=1")

    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "config error: foo: unknown field (from the command line)"
    )


def test_check_config_checks_the_overrides_the_other_commands_take() -> None:
    config = str(default_config_path())

    refused = run("check-config", config, "--set", "scoring.mql.threshold=1e400")
    accepted = run("check-config", config, "--set", "scoring.mql.min_engagement=5")

    assert refused.returncode == 1
    assert "scoring.mql.threshold: Input should be a finite number" in refused.stderr
    assert "(from the command line)" in refused.stderr
    assert accepted.returncode == 0
    assert "min engagement 5)" in accepted.stdout


def test_calibrate_refuses_outputs_and_labels_of_different_leads(
    tmp_path: Path,
) -> None:
    outputs, labels = tmp_path / "outputs.jsonl", tmp_path / "labels.csv"
    event = {"type": "score_changed", "lead_id": "web-1", "score": 70.0}
    event |= {"engagement": 50.0, "fit": 20.0}
    outputs.write_text(json.dumps(event) + "\n")
    labels.write_text("lead_id,converted\ncrm-1,1\ncrm-2,0\n")

    result = run("calibrate", "--outputs", str(outputs), "--labels", str(labels))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"calibrate: none of the 1 leads in {outputs} is in {labels} (2 leads); "
        "are they of the same data?"
    )


@pytest.mark.parametrize("command", ["run", "watch", "produce"])
def test_a_setting_librdkafka_does_not_know_is_a_config_error(
    command: str, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text("")
    extra = {
        "run": ["--redis-url", "redis://127.0.0.1:1/0", "--metrics-port", "0"],
        "watch": [],
        "produce": [str(records)],
    }[command]
    # Below kafka.settings the rest of the name is one setting, "_" read as ".".
    env = {"SCORER_KAFKA__SETTINGS__SOCKET_TIMEOUT_SECONDS": "5"}

    result = run(command, "--bootstrap-servers", "127.0.0.1:1", *extra, env=env)

    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "config error: kafka.settings: librdkafka: No such configuration "
        'property: "socket.timeout.seconds"'
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["import-access-log", "replay"])
def test_a_full_disk_under_the_output_is_one_line_not_a_traceback(
    command: str, tmp_path: Path
) -> None:
    log = Path(__file__).parents[2] / "examples" / "access_log" / "apache_logs"
    events = tmp_path / "events.jsonl"
    with events.open("wb") as out:
        subprocess.run(
            [sys.executable, "-m", "scorer.cli", "import-access-log", str(log)],
            stdout=out,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    source = log if command == "import-access-log" else events

    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "scorer.cli", command, str(source)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: cannot write the output: No space left on device"
    )


def test_a_closed_standard_output_is_named() -> None:
    log = Path(__file__).parents[2] / "examples" / "access_log" / "apache_logs"
    command = f"'{sys.executable}' -m scorer.cli import-access-log '{log}' >&-"

    result = subprocess.run(
        ["bash", "-c", command], stderr=subprocess.PIPE, text=True, check=False
    )

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: standard output: closed before the command started"
    )


@pytest.mark.parametrize("flag", ["--state-out", "--dead-letter"])
def test_a_full_disk_under_a_named_output_names_its_file(
    flag: str, tmp_path: Path
) -> None:
    # One good record for the state, one bad one for the dead letters.
    events = tmp_path / "events.jsonl"
    good = {
        "type": "page_view",
        "event_id": "e1",
        "lead_id": "lead-1",
        "occurred_at": "2026-12-01T10:00:00Z",
        "url": "https://www.example.com/pricing",
    }
    events.write_text(json.dumps(good) + "\nnot json\n")

    result = run("replay", str(events), flag, "/dev/full")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: /dev/full: No space left on device"
    )


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["replay", "--help"], ["calibrate", "-h"]]
)
def test_help_that_cannot_be_written_is_an_error(argv: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "scorer.cli", *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )

    assert result.returncode == 1
    assert result.stderr == "error: cannot write the output: No space left on device\n"


def test_help_to_a_closed_standard_output_is_an_error() -> None:
    command = f"'{sys.executable}' -m scorer.cli --help >&-"

    result = subprocess.run(
        ["bash", "-c", command], stderr=subprocess.PIPE, text=True, check=False
    )

    assert result.returncode == 1
    assert (
        result.stderr == "error: standard output: closed before the command started\n"
    )


def test_help_to_a_standard_output_opened_for_reading_is_one_line() -> None:
    with open(os.devnull) as read_only:
        result = subprocess.run(
            [sys.executable, "-m", "scorer.cli", "--help"],
            stdout=read_only,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )

    assert result.returncode == 1
    assert result.stderr == "error: cannot write the output: Bad file descriptor\n"


def test_a_state_out_reader_that_goes_away_is_named(tmp_path: Path) -> None:
    # Far more state than a pipe holds, for a reader that takes 10 bytes.
    events = tmp_path / "events.jsonl"
    lines = [
        json.dumps(
            {
                "type": "page_view",
                "event_id": f"e{n}",
                "lead_id": f"lead-{n}",
                "occurred_at": "2026-12-01T10:00:00Z",
                "url": "/pricing",
            }
        )
        for n in range(3000)
    ]
    events.write_text("\n".join(lines) + "\n")
    fifo = tmp_path / "state.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(
        ["head", "-c", "10", str(fifo)], stdout=subprocess.DEVNULL
    )

    result = run("replay", str(events), "--state-out", str(fifo))
    reader.wait(timeout=60)

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"error: {fifo}: Broken pipe"
