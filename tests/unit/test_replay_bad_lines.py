"""`scorer replay` over a file of good and bad lines, run as a user runs it.

Every bad line is reported once with its file, number and reason, and kept
byte for byte in the --dead-letter file; the good lines give exactly the
outputs of a replay of only them; nothing shows a traceback.
"""

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from command import TIMEOUT_S
from command import scorer as run
from unencodable import with_infinite_demo_points

from scorer.config import default_config_path, load_config
from scorer.events import format_time
from scorer.replay import Line, Replay
from scorer.wire import JsonCodec

T0_MS = 1_750_000_000_000
PERSONAL = "jane.doe@example.com"
REPORT = re.compile(r"^(?P<file>.+):(?P<line>\d+): (?P<reason>[a-z_]+)(?: |:)")


def page(n: int, lead: str, url: str, **changes: Any) -> dict[str, Any]:
    record = {
        "event_id": f"e{n}",
        "lead_id": lead,
        "type": "page_view",
        "occurred_at": format_time(T0_MS + n * 60_000),
        "url": url,
    }
    return {**record, **changes}


def encoded(record: Any) -> bytes:
    return json.dumps(record).encode()


def bad_lines() -> list[tuple[bytes, str]]:
    """Malformed lines (without their newline) and the reason for each."""
    blob = bytes(range(256))  # holds a newline: two lines, both bad
    before, after = blob.split(b"\n")
    return [
        (b"\xff\xfe" + encoded(page(900, "x1", "/pricing")), "bad_json"),
        (before, "bad_json"),
        (after, "bad_json"),
        (encoded(page(901, "x2", "/" + "p" * 5_000_000)), "too_long"),
        (b"", "empty_line"),
        (b"   ", "empty_line"),
        (encoded([page(902, "x3", "/pricing")]), "not_an_object"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        # Deeper than any Python's json takes (3.13 parses 2,000 levels).
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "bad_json"),
        (encoded(page(903, PERSONAL, "/pricing", type=PERSONAL)), "unknown_type"),
        (encoded(page(904, "x4", "/pricing", occurred_at=None)), "null_field"),
        (encoded(page(905, "x5", PERSONAL, lead_id=7)), "wrong_type"),
        (
            encoded(page(906, "x6", "/pricing", occurred_at="2025-06-01")),
            "bad_timestamp",
        ),
        (f'{{"note": "{PERSONAL}", "type": "page_view"'.encode(), "bad_json"),
    ]


def good_lines() -> list[bytes]:
    urls = ("/pricing", "/demo", "/blog/a", "/careers", "/")
    return [encoded(page(n, f"L{n % 7}", urls[n % len(urls)])) for n in range(60)]


def mixed_file(tmp_path: Path) -> tuple[Path, list[tuple[int, str, bytes]]]:
    """Good lines with the bad ones spread among them; (number, reason, bytes)."""
    good, bad = good_lines(), bad_lines()
    lines: list[bytes] = []
    expected: list[tuple[int, str, bytes]] = []
    for index, text in enumerate(good):
        lines.append(text)
        if index % 4 == 1 and bad:
            text, reason = bad.pop(0)
            lines.append(text)
            expected.append((len(lines), reason, text + b"\n"))
    assert not bad, "every bad line is in the file"
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, expected


def summary_rows(stderr: str) -> dict[str, str]:
    table = stderr.split("replay summary\n", 1)[1]
    rows = [line.strip().rsplit("  ", 1) for line in table.splitlines()]
    return {label.strip(): value.strip() for label, value in rows}


def test_bad_lines_are_reported_kept_and_skipped(tmp_path: Path) -> None:
    mixed, expected = mixed_file(tmp_path)
    only_good = tmp_path / "good.jsonl"
    only_good.write_bytes(b"\n".join(good_lines()) + b"\n")
    dead = tmp_path / "dead.jsonl"

    result = run("replay", "--dead-letter", str(dead), str(mixed))
    reference = run("replay", str(only_good))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert reference.returncode == 0 and reference.stdout
    assert result.stdout == reference.stdout

    reports = [REPORT.match(line) for line in result.stderr.splitlines()]
    found = [(int(m["line"]), m["reason"]) for m in reports if m]
    assert found == [(number, reason) for number, reason, _ in expected]
    assert all(m["file"] == str(mixed) for m in reports if m)
    assert PERSONAL not in result.stderr

    rows = summary_rows(result.stderr)
    assert rows["records read"] == f"{len(good_lines()) + len(expected):,}"
    assert rows["dead-lettered"] == str(len(expected))
    reasons: dict[str, int] = {}
    for _, reason, _ in expected:
        reasons[reason] = reasons.get(reason, 0) + 1
    assert {r: int(rows[r]) for r in reasons} == reasons

    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["file"], d["line"], d["reason"]) for d in letters] == [
        (str(mixed), number, reason) for number, reason, _ in expected
    ]
    assert [raw_bytes(d) for d in letters] == [text for _, _, text in expected]


def raw_bytes(letter: dict[str, Any]) -> bytes:
    if "raw_base64" in letter:
        return base64.b64decode(letter["raw_base64"])
    return str(letter["raw"]).encode()


def test_a_missing_input_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "absent.jsonl"

    result = run("replay", str(missing))

    assert result.returncode == 1
    assert result.stderr == f"error: {missing}: No such file or directory\n"
    assert result.stdout == ""


def test_a_directory_as_input_is_one_line(tmp_path: Path) -> None:
    result = run("replay", str(tmp_path))

    assert result.returncode == 1
    assert result.stderr == f"error: {tmp_path}: Is a directory\n"


def test_an_unexpected_error_is_reported_as_a_bad_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decode = JsonCodec.decode

    def buggy(self: JsonCodec, value: bytes) -> dict[str, Any]:
        # A stand-in for a bug in the decoder; its message quotes the line.
        if PERSONAL.encode() in value:
            raise ValueError(f"cannot handle {PERSONAL}")
        return decode(self, value)

    monkeypatch.setattr(JsonCodec, "decode", buggy)
    lines = [
        encoded(page(1, "L1", "/pricing")),
        encoded(page(2, "L2", f"/pricing?who={PERSONAL}")),
        encoded(page(3, "L3", "/demo")),
    ]
    errors, out = io.StringIO(), io.BytesIO()

    stats = Replay(load_config(environ={}), errors=errors).run(
        [Line("in", n, text) for n, text in enumerate(lines, 1)], out
    )

    assert stats.bad == {"internal_error": 1}
    assert stats.outcomes["scored"] == 2
    assert errors.getvalue().startswith("in:2: internal_error: unexpected ValueError")
    assert PERSONAL not in errors.getvalue()
    scored = [json.loads(line)["lead_id"] for line in out.getvalue().splitlines()]
    assert scored == ["L1", "L3"]


def test_a_line_whose_outputs_cannot_be_encoded_is_a_bad_line() -> None:
    """An infinite score has no JSON form; replay stopped at the first one."""
    config = with_infinite_demo_points(load_config(environ={}))
    lines = [
        encoded(page(1, "L1", "/pricing")),
        encoded(page(2, "L2", "/demo")),  # infinite points
        encoded(page(3, "L3", "/pricing")),
    ]
    errors, dead, out = io.StringIO(), io.StringIO(), io.BytesIO()

    stats = Replay(config, errors=errors, dead_letters=dead).run(
        [Line("in", n, text) for n, text in enumerate(lines, 1)], out
    )

    assert errors.getvalue() == (
        "in:2: output_not_encodable: score_changed output: "
        "record is not encodable as JSON: ValueError\n"
    )
    (letter,) = [json.loads(line) for line in dead.getvalue().splitlines()]
    assert (letter["line"], letter["raw"]) == (2, lines[1].decode())
    assert stats.bad == {"output_not_encodable": 1}
    assert stats.outcomes == {"scored": 2}
    assert (stats.outputs, stats.mql_up) == (2, 0)
    scored = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["lead_id"], e["score"]) for e in scored] == [("L1", 20.0), ("L3", 20.0)]


def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.jsonl"
    path.write_bytes(b"\n".join(good_lines()) + b"\n")
    return path


@pytest.mark.parametrize("flag", ["--dead-letter", "--state-out"])
def test_an_output_in_a_missing_folder_fails_before_scoring(
    tmp_path: Path, flag: str
) -> None:
    output = tmp_path / "absent" / "out.jsonl"

    result = run("replay", flag, str(output), str(good_file(tmp_path)))

    assert result.returncode == 1
    assert result.stderr == f"error: {output}: No such file or directory\n"
    assert result.stdout == ""


@pytest.mark.parametrize("flag", ["--dead-letter", "--state-out"])
def test_an_output_that_is_an_input_is_refused_untouched(
    tmp_path: Path, flag: str
) -> None:
    events = good_file(tmp_path)
    before = events.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(events)
    (tmp_path / "hard.jsonl").hardlink_to(events)
    spellings = [str(events), str(tmp_path / "sub" / ".." / "good.jsonl")]
    links = [str(tmp_path / "link.jsonl"), str(tmp_path / "hard.jsonl")]

    for output in [*spellings, *links]:
        result = run("replay", flag, output, str(events))

        assert result.returncode == 2
        assert result.stderr == (
            f"error: {flag}: {output} is also an input; refusing to write over it\n"
        )
        assert result.stdout == ""
        assert events.read_bytes() == before


@pytest.mark.parametrize("flag", ["--dead-letter", "--state-out"])
def test_an_output_that_is_the_standard_input_is_refused_untouched(
    tmp_path: Path, flag: str
) -> None:
    events = good_file(tmp_path)
    before = events.read_bytes()

    # `scorer replay --state-out in.jsonl - < in.jsonl`: stdin is the file.
    with events.open("rb") as redirected:
        result = subprocess.run(
            [sys.executable, "-m", "scorer.cli", "replay", flag, str(events), "-"],
            stdin=redirected,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )

    assert result.returncode == 2
    assert f"{events} is also the standard input" in result.stderr
    assert events.read_bytes() == before


@pytest.mark.parametrize("flag", ["--dead-letter", "--state-out"])
def test_dash_is_no_output_file(tmp_path: Path, flag: str) -> None:
    # Standard output carries the output events; a file named "-" would
    # surprise whoever meant standard output.
    result = run("replay", flag, "-", str(good_file(tmp_path)))

    assert result.returncode == 2
    assert f"argument {flag}: - is standard output" in result.stderr
    assert "./-" in result.stderr
    assert result.stdout == ""
    assert not Path("-").exists()


def test_the_two_outputs_must_be_two_files(tmp_path: Path) -> None:
    events = good_file(tmp_path)
    output = tmp_path / "out.jsonl"
    output.write_text("kept\n")

    result = run(
        "replay", "--dead-letter", str(output), "--state-out", str(output), str(events)
    )

    assert result.returncode == 2
    assert result.stderr == (
        f"error: --state-out: {output} is also the --dead-letter file; "
        "refusing to write over it\n"
    )
    assert output.read_text() == "kept\n"


def test_the_packaged_default_config_is_not_an_output(tmp_path: Path) -> None:
    # A copy of the package, so that a failure overwrites the copy's
    # default.yaml and not the checkout's.
    package = Path(default_config_path()).parent
    shutil.copytree(
        package, tmp_path / "scorer", ignore=shutil.ignore_patterns("__pycache__")
    )
    packaged = tmp_path / "scorer" / "default.yaml"
    events = good_file(tmp_path)

    result = run(
        "replay",
        "--state-out",
        str(packaged),
        str(events),
        env={"PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: --state-out: {packaged} is also the config; "
        "refusing to write over it\n"
    )
    assert packaged.read_bytes() == default_config_path().read_bytes()


def test_the_config_is_not_an_output(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(default_config_path().read_bytes())
    events = good_file(tmp_path)

    result = run(
        "replay", "--config", str(config), "--dead-letter", str(config), str(events)
    )

    assert result.returncode == 2
    assert "is also the config" in result.stderr
    assert config.read_bytes() == default_config_path().read_bytes()


def test_both_outputs_are_written(tmp_path: Path) -> None:
    mixed, expected = mixed_file(tmp_path)
    dead, state = tmp_path / "dead.jsonl", tmp_path / "state.jsonl"

    result = run(
        "replay", "--dead-letter", str(dead), "--state-out", str(state), str(mixed)
    )

    assert result.returncode == 0, result.stderr
    assert len(dead.read_text().splitlines()) == len(expected)
    leads = {json.loads(line)["lead_id"] for line in state.read_text().splitlines()}
    assert leads == {f"L{n}" for n in range(7)}


def test_a_byte_order_mark_opening_a_file_is_ignored(tmp_path: Path) -> None:
    plain = good_file(tmp_path)
    marked = tmp_path / "marked.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())

    result = run("replay", str(marked), str(marked))
    reference = run("replay", str(plain), str(plain))

    assert result.returncode == 0, result.stderr
    assert "bad_json" not in result.stderr
    assert result.stdout == reference.stdout
    assert summary_rows(result.stderr)["dead-lettered"] == "0"


def test_a_json_error_names_the_file_line_and_a_column(tmp_path: Path) -> None:
    unclosed = b'{"lead_id": "L1", "type": "page_view"'
    path = tmp_path / "events.jsonl"
    path.write_bytes(unclosed + b"\n" + good_lines()[0] + b"\n")

    result = run("replay", str(path))

    reports = [line for line in result.stderr.splitlines() if "bad_json" in line]
    end = len(unclosed) + 1  # the column just past the line's last character
    assert reports[0] == (
        f"{path}:1: bad_json: not JSON: Expecting ',' delimiter: column {end}"
    )


def test_a_byte_order_mark_inside_a_file_is_a_bad_line(tmp_path: Path) -> None:
    first, second = good_lines()[:2]
    path = tmp_path / "events.jsonl"
    path.write_bytes(first + b"\n\xef\xbb\xbf" + second + b"\n")

    result = run("replay", str(path))

    assert f"{path}:2: bad_json" in result.stderr
    assert summary_rows(result.stderr)["dead-lettered"] == "1"
