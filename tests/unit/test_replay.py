"""`scorer replay` and `scorer check-config` as a user runs them."""

import json
from pathlib import Path

from command import scorer as run

from scorer.events import format_time
from scorer.lead import Snapshot
from scorer.replay import state_line

T0 = 1_750_000_000_000
DAY_MS = 86_400_000


def summary_rows(stderr: str) -> dict[str, str]:
    """The rows of replay's summary table: label -> figure."""
    table = stderr.split("replay summary\n", 1)[1]
    rows = [line.strip().rsplit("  ", 1) for line in table.splitlines()]
    return {label.strip(): value.strip() for label, value in rows}


def page(event_id: str, lead: str, at_ms: int, url: str) -> str:
    record = {
        "event_id": event_id,
        "lead_id": lead,
        "type": "page_view",
        "occurred_at": format_time(at_ms),
        "url": url,
    }
    return json.dumps(record)


def firmographics(lead: str, at_ms: int, title: str, employees: int = 900) -> str:
    record = {
        "lead_id": lead,
        "type": "firmographics",
        "title": title,
        "employees": employees,
        "updated_at": format_time(at_ms),
    }
    return json.dumps(record)


def test_replay_writes_outputs_and_the_final_state(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                firmographics("L1", T0, "Director of IT"),
                page("e1", "L1", T0, "/pricing"),
                page("e2", "L2", T0, "/blog/post"),
                page("e3", "L1", T0 + 1000, "/demo"),
            ]
        )
        + "\n"
    )
    state = tmp_path / "state.jsonl"

    result = run("replay", "--state-out", str(state), str(events))

    assert result.returncode == 0, result.stderr
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["type"] for o in outputs] == [
        "score_changed",
        "score_changed",
        "score_changed",
        "score_changed",
        "mql_crossed",
    ]
    assert outputs[-1]["lead_id"] == "L1" and outputs[-1]["score"] == 85.0
    finals = {s["lead_id"]: s for s in map(json.loads, state.read_text().splitlines())}
    assert finals["L1"] == {
        "lead_id": "L1",
        "fit": 35.0,
        "engagement": 50.0,
        "score": 85.0,
        "as_of": format_time(T0 + 1000),
        "is_mql": True,
    }
    assert finals["L2"]["score"] == 1.0
    summary = summary_rows(result.stderr)
    assert summary["records read"] == "4"
    assert summary["MQL crossings up"] == "1"
    assert summary["leads in state"] == "2"
    by_rule = {k: v for k, v in summary.items() if k.startswith("score changes by")}
    assert by_rule == {
        f"score changes by {rule}": "1"
        for rule in ("(fit)", "pricing_page", "blog_read", "demo_request")
    }


def test_a_redelivered_crossing_is_counted_once(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    crossing = page("a1", "A", T0 + 1000, "/demo")
    events.write_text(
        "\n".join([firmographics("A", T0, "Director of IT"), crossing, crossing]) + "\n"
    )

    result = run("replay", str(events))

    assert result.returncode == 0, result.stderr
    outputs = result.stdout.splitlines()
    assert outputs[3:] == outputs[1:3], "the copy re-publishes byte for byte"
    summary = summary_rows(result.stderr)
    assert summary["MQL crossings up"] == "1"
    assert summary["duplicates"] == "1"
    assert summary["outputs"] == "5"
    assert summary["re-published copies"] == "2"


def test_an_event_scored_again_past_the_dedupe_horizon_is_a_new_output(
    tmp_path: Path,
) -> None:
    """Forgotten ids are scored anew: not a copy for a reader deduping by id."""
    events = tmp_path / "events.jsonl"
    first = page("h1", "H", T0, "/pricing")
    later = page("h2", "H", T0 + 31 * DAY_MS, "/demo")
    events.write_text("\n".join([first, later, first]) + "\n")

    result = run("replay", str(events))

    assert result.returncode == 0, result.stderr
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    again = [o for o in outputs if o["source_event_id"] == "h1"]
    assert len(again) == 2
    assert again[0]["score"] != again[1]["score"]
    assert again[0]["event_id"] != again[1]["event_id"]
    assert len({o["event_id"] for o in outputs}) == len(outputs)


def test_the_summary_counts_late_and_too_late_events(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    newest = page("n", "A", T0 + 5 * DAY_MS, "/pricing")
    late = page("l", "A", T0 + 5 * DAY_MS - 3_600_000, "/demo")  # 1 h behind
    too_late = page("t", "A", T0, "/pricing")  # 5 days behind
    events.write_text("\n".join([newest, late, too_late, too_late]) + "\n")

    result = run("replay", str(events))

    assert result.returncode == 0, result.stderr
    summary = summary_rows(result.stderr)
    assert summary["late, within allowed_lateness"] == "1"
    assert summary["too late, past allowed_lateness"] == "1"  # the copy is no event
    assert summary["duplicates"] == "1"


def test_every_number_in_the_state_is_a_float(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                firmographics("A", T0, "Director of IT"),
                firmographics("B", T0, "Intern", employees=3),  # no fit rule
                page("b1", "B", T0 + 1000, "/blog/post"),
            ]
        )
        + "\n"
    )
    state = tmp_path / "state.jsonl"

    result = run("replay", "--state-out", str(state), str(events))

    assert result.returncode == 0, result.stderr
    finals = [json.loads(line) for line in state.read_text().splitlines()]
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    # Two leads; A's fit and B's read move a score, B's fit of 0 does not.
    assert (len(finals), len(outputs)) == (2, 2)
    for document in [*finals, *outputs]:
        numbers = {key: document[key] for key in ("fit", "engagement", "score")}
        assert all(type(n) is float for n in numbers.values()), document


def test_as_of_decays_the_state_and_skips_later_events(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        page("e1", "L1", T0, "/pricing")
        + "\n"
        + page("e2", "L1", T0 + 30 * DAY_MS, "/demo")
        + "\n"
    )
    state = tmp_path / "state.jsonl"
    as_of = format_time(T0 + 14 * DAY_MS)

    result = run("replay", "--as-of", as_of, "--state-out", str(state), str(events))

    assert result.returncode == 0, result.stderr
    final = json.loads(state.read_text())
    assert final["score"] == 10.0  # 20 points, one 14-day half-life later
    assert final["as_of"] == as_of
    assert summary_rows(result.stderr)["after --as-of"] == "1"


def test_the_default_as_of_is_the_newest_record_firmographics_included(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                page("a1", "A", T0, "/pricing"),
                firmographics("A", T0 + 18 * DAY_MS, "Director of IT"),
                firmographics("Z", T0 + 23 * DAY_MS, "Director of IT"),
            ]
        )
        + "\n"
    )
    by_default, explicit = tmp_path / "default.jsonl", tmp_path / "explicit.jsonl"

    first = run("replay", "--state-out", str(by_default), str(events))
    newest = format_time(T0 + 23 * DAY_MS)
    second = run("replay", "--as-of", newest, "--state-out", str(explicit), str(events))

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    states = [json.loads(line) for line in by_default.read_text().splitlines()]
    assert {(s["lead_id"], s["as_of"], s["fit"]) for s in states} == {
        ("A", newest, 35.0),
        ("Z", newest, 35.0),
    }
    assert by_default.read_text() == explicit.read_text()


def test_a_state_as_of_the_epoch_says_so() -> None:
    # 0 ms is a time like any other (`scorer state --as-of 1970-01-01T00:00:00Z`
    # on a lead with a fit only): it was once written as null.
    snapshot = Snapshot("L1", 35.0, 0.0, 35.0, 0, False)

    assert json.loads(state_line(snapshot))["as_of"] == "1970-01-01T00:00:00.000Z"


def test_replay_reads_standard_input() -> None:
    result = run("replay", "-", stdin=page("e1", "L9", T0, "/pricing") + "\n")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lead_id"] == "L9"


def test_a_bad_as_of_names_the_option() -> None:
    result = run("replay", "--as-of", "yesterday", "-", stdin="")

    assert result.returncode == 2
    assert "--as-of" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_default(tmp_path: Path) -> None:
    config = Path(__file__).resolve().parents[2] / "scorer" / "default.yaml"

    result = run("check-config", str(config))

    assert result.returncode == 0
    assert "7 engagement and 3 fit rules, MQL at 60" in result.stdout


def test_check_config_names_every_wrong_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    default = Path(__file__).resolve().parents[2] / "scorer" / "default.yaml"
    text = default.read_text().replace("half_life: 14d", "half_life: -3d")
    text = text.replace("batch_size: 1000", "batch_size: many")
    config.write_text(text)

    result = run("check-config", str(config))

    assert result.returncode == 1
    assert "scoring.half_life:" in result.stderr
    assert "pipeline.batch_size:" in result.stderr
    assert result.stderr.endswith(
        "`scorer default-config` prints the shipped "
        "config, every section in use, to compare with)\n"
    )
    assert "Traceback" not in result.stderr
