"""The progress line of long replays, and replay's clean stdout."""

import io
import json
from pathlib import Path

from command import scorer

from scorer.progress import ProgressLine


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_the_line_shows_share_rate_and_time_left() -> None:
    clock = Clock()
    progress = ProgressLine(io.StringIO(), total_bytes=1000, clock=clock)

    progress.advance(records=500, bytes_read=250)
    clock.now_s = 10.0

    assert progress.render(clock.now_s) == (
        "[########----------------------]  25%  500 records  50/s  left 0:00:30"
    )


def test_without_a_size_the_line_counts() -> None:
    clock = Clock()
    progress = ProgressLine(io.StringIO(), total_bytes=None, clock=clock)
    progress.advance(records=1234, bytes_read=99_999)
    clock.now_s = 2.0

    assert progress.render(clock.now_s) == "1,234 records  617/s  0:00:02"


def test_redraws_are_throttled_and_the_end_closes_the_line() -> None:
    clock = Clock()
    stream = io.StringIO()
    progress = ProgressLine(stream, total_bytes=100, clock=clock)

    progress.advance(1, 10)
    progress.advance(1, 10)  # same instant: no redraw
    clock.now_s = 1.0
    progress.advance(1, 10)
    progress.close()

    assert stream.getvalue().count("\r") == 3
    assert stream.getvalue().endswith("\x1b[K\n")


def test_replay_progress_goes_to_stderr_and_stdout_holds_outputs_only(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    records = [
        {
            "event_id": f"e{n}",
            "lead_id": f"L{n % 7}",
            "type": "page_view",
            "occurred_at": "2026-12-01T10:00:00.000Z",
            "url": "/pricing" if n % 2 else "/about",
        }
        for n in range(2500)
    ]
    events.write_text("".join(json.dumps(r) + "\n" for r in records) + "{bad\n")

    result = scorer("replay", "--progress", str(events))

    assert result.returncode == 0, result.stderr
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert {o["type"] for o in outputs} <= {"score_changed", "mql_crossed"}
    assert "[##############################] 100%  2,501 records" in result.stderr
    table = result.stderr.split("replay summary\n", 1)[1]
    rows = dict(line.strip().rsplit("  ", 1) for line in table.splitlines())
    figures = {label.strip(): value.strip() for label, value in rows.items()}
    assert figures["records read"] == "2,501"
    assert figures["scored"] == "1,250"
    assert figures["no rule"] == "1,250"
    assert figures["dead-lettered"] == "1"
    assert figures["bad_json"] == "1"
    assert figures["leads in state"] == "7"
    assert figures["outputs"] == str(len(outputs))
    assert "records/s" in figures


def test_no_progress_line_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")

    result = scorer("replay", str(events))

    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert result.stderr.startswith("replay summary\n")
