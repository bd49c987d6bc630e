"""`scorer calibrate`: the sweep, and files it cannot use.

A file it cannot use ends the command with one line naming the file (and
the line, where there is one), run as a user runs it: no traceback.
"""

import json
import sys
from pathlib import Path

import pytest
from command import scorer as run

from scorer.calibrate import (
    MAX_THRESHOLDS,
    Row,
    UnusableFile,
    closing_line,
    default_thresholds,
    no_recommendation,
    read_labels,
    read_peaks,
    recommend,
    render,
    sweep,
    sweep_labelled,
    why_recommended,
)
from scorer.config import default_config_path, load_config

EXPECTED = "expected 0, 1, true or false"
NOT_FINITE = "not an output event (%s is not a finite number)"
LABELS = "lead_id,converted\nL1,1\nL2,0\nL3,true\nL4,FALSE\nL5, True \n"


def outputs(tmp_path: Path, *scores: tuple[str, float]) -> Path:
    path = tmp_path / "outputs.jsonl"
    lines = [
        json.dumps({"type": "score_changed", "lead_id": lead, "score": score}) + "\n"
        for lead, score in scores
    ]
    path.write_text("".join(lines))
    return path


def written(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def test_labels_accept_0_1_true_and_false_in_any_case(tmp_path: Path) -> None:
    labels = read_labels(written(tmp_path, "labels.csv", LABELS))

    assert labels == {"L1": True, "L2": False, "L3": True, "L4": False, "L5": True}


def test_a_spreadsheets_byte_order_mark_is_no_part_of_the_header(
    tmp_path: Path,
) -> None:
    path = written(tmp_path, "labels.csv", b"\xef\xbb\xbf" + LABELS.encode())

    assert read_labels(path)["L1"] is True


def test_peaks_are_the_highest_score_of_each_lead(tmp_path: Path) -> None:
    path = outputs(tmp_path, ("L1", 10.0), ("L2", 5.0), ("L1", 30.0), ("L1", 20.0))

    assert read_peaks(path) == {"L1": 30.0, "L2": 5.0}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            "lead_id,converted\nL1,1\nL2,yes\n",
            ":3: converted is a value of 3 characters; expected 0, 1",
        ),
        ("lead_id,converted\nL1,2\n", ":2: converted is a value of 1 character;"),
        ("lead_id,converted\nL1,\n", ":2: converted is empty;"),
        ("lead_id,converted\nL1\n", ":2: converted is missing; expected"),
        ("lead_id,converted\n,1\n", ":2: no lead_id"),
        ("id,converted\nL1,1\n", ":1: no lead_id column in the header"),
        ("lead_id,won\nL1,1\n", ":1: no converted column in the header"),
        ("lead_id,converted\n", ": no labels, only a header"),
        ("", ": empty; expected a lead_id,converted header"),
        ("lead_id,converted\nL1,1\nL2,\xff\n".encode("latin-1"), ":3: not UTF-8"),
    ],
)
def test_unusable_labels_are_named_by_file_and_line(
    tmp_path: Path, content: str | bytes, problem: str
) -> None:
    path = written(tmp_path, "labels.csv", content)

    with pytest.raises(UnusableFile) as caught:
        read_labels(path)

    assert str(caught.value).startswith(f"{path}{problem}")


def test_a_converted_value_that_may_be_personal_is_not_quoted(
    tmp_path: Path,
) -> None:
    # A shifted column: a name in `converted`, short and without an `@`.
    text = "lead_id,converted\nL1,ann@example.com\nL2,Ann Roe,1\n"
    path = written(tmp_path, "labels.csv", text)

    with pytest.raises(UnusableFile) as caught:
        read_labels(path)
    assert str(caught.value) == (
        f"{path}:2: converted is a value of 15 characters; expected 0, 1, true or false"
    )

    path.write_text("lead_id,converted\nL2,Ann Roe,1\n")
    with pytest.raises(UnusableFile) as caught:
        read_labels(path)
    assert "Ann" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": 3}\nnot json\n',
            ":2: not JSON (Expecting value)",
        ),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": 3}\n\xff\xfe\n',
            ":2: not UTF-8 text",
        ),
        (b'["L1", 3]\n', ":1: not an output event (no lead_id)"),
        (
            b'{"type": "score_changed", "lead_id": "L1"}\n',
            ":1: not an output event (no numeric score)",
        ),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": "3"}\n',
            ":1: not an output event (no numeric",
        ),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", ":1: not JSON"),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": NaN}\n',
            f":1: {NOT_FINITE % 'score'}",
        ),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": Infinity}\n',
            f":1: {NOT_FINITE % 'score'}",
        ),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": 1e999}\n',
            f":1: {NOT_FINITE % 'score'}",
        ),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": 1'
            + b"0" * 400
            + b"}\n",
            ":1: not an output",
        ),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": 1'
            + b"0" * 5000
            + b"}\n",
            ":1: not an output",
        ),
        (
            b'{"type": "score_changed", "lead_id": "L1", "score": 3, '
            b'"engagement": -Infinity}\n',
            f":1: {NOT_FINITE % 'engagement'}",
        ),
    ],
)
def test_unusable_outputs_are_named_by_file_and_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = written(tmp_path, "outputs.jsonl", content)

    with pytest.raises(UnusableFile) as caught:
        read_peaks(path)

    assert str(caught.value).startswith(f"{path}{problem}")


def test_the_command_sweeps_and_suggests(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    scores = outputs(
        tmp_path, ("L1", 12.0), ("L2", 7.0), ("L3", 3.0), ("L4", 1.0), ("L5", 2.0)
    )

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("threshold  reached")
    assert result.stderr == ""


def test_each_unusable_file_is_one_line_from_the_command(tmp_path: Path) -> None:
    good_labels = written(tmp_path, "labels.csv", LABELS)
    good_outputs = outputs(tmp_path, ("L1", 12.0))
    binary = written(tmp_path, "binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    absent = tmp_path / "absent"
    header_only = written(tmp_path, "header.csv", "lead_id,converted\n")
    yes = written(tmp_path, "yes.csv", "lead_id,converted\nL1,yes\n")
    cases = [
        (good_outputs, header_only, f"error: {header_only}: no labels, only a header"),
        (
            good_outputs,
            yes,
            f"error: {yes}:2: converted is a value of 3 characters; {EXPECTED}",
        ),
        (absent, good_labels, f"error: {absent}: No such file or directory"),
        (good_outputs, absent, f"error: {absent}: No such file or directory"),
        (binary, good_labels, f"error: {binary}:1: not UTF-8 text"),
        (good_outputs, binary, f"error: {binary}:1: not UTF-8 text"),
        (tmp_path, good_labels, f"error: {tmp_path}: Is a directory"),
    ]

    for scores, labels, message in cases:
        result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

        assert result.returncode == 1
        assert result.stderr == message + "\n"
        assert result.stdout == ""


def test_a_lead_labelled_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", "lead_id,converted\nL1,1\nL2,0\nL1,0\n")

    with pytest.raises(UnusableFile) as caught:
        read_labels(labels)
    assert str(caught.value) == (
        f"{labels}:4: lead L1 is labelled twice (first on line 2)"
    )


def test_a_threshold_no_better_than_all_the_leads_is_not_selective() -> None:
    # 40% of all leads convert: a threshold that 90 of 100 leads reach, with
    # 40 of them converted, is in no band's sense a choice.
    loose = Row(5.0, reached=90, converted=36, leads=100, conversions=40)
    tight = Row(25.0, reached=30, converted=15, leads=100, conversions=40)

    assert loose.lift == pytest.approx(1.0)
    assert loose.verdict == "not selective"
    assert tight.lift == pytest.approx(1.25)
    assert tight.verdict == "acceptable"
    assert recommend([loose, tight]) == tight


def test_a_score_reached_on_fit_alone_is_not_a_peak(tmp_path: Path) -> None:
    path = tmp_path / "outputs.jsonl"
    events = [
        {
            "type": "score_changed",
            "lead_id": "L1",
            "score": 30.0,
            "engagement": 0.0,
        },  # fit alone
        {"type": "score_changed", "lead_id": "L1", "score": 12.0, "engagement": 6.0},
        {"type": "score_changed", "lead_id": "L2", "score": 9.0, "engagement": 9.0},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))

    assert read_peaks(path) == {"L1": 30.0, "L2": 9.0}
    assert read_peaks(path, min_engagement=5.0) == {"L1": 12.0, "L2": 9.0}


def test_a_score_that_is_not_a_number_is_one_line_from_the_command(
    tmp_path: Path,
) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    scores = written(
        tmp_path,
        "out.jsonl",
        b'{"type": "score_changed", "lead_id": "L1", "score": NaN}\n',
    )

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    assert result.returncode == 1
    assert result.stderr == f"error: {scores}:1: {NOT_FINITE % 'score'}\n"


@pytest.mark.parametrize("top", [60.0, 499.0, 501.0, 1e308, sys.float_info.max])
def test_the_default_sweep_is_a_table_to_read_whatever_the_top_score(
    top: float,
) -> None:
    thresholds = default_thresholds({"L1": top})

    assert 1 <= len(thresholds) <= MAX_THRESHOLDS
    assert thresholds == sorted(thresholds)
    assert thresholds[-1] <= top
    # Near 1e308 floats are too far apart to be exact multiples of 5.
    if top < 1e15:
        assert all(t % 5 == 0 for t in thresholds)


def test_scores_below_500_are_swept_in_steps_of_5() -> None:
    assert default_thresholds({"L1": 23.0}) == [5.0, 10.0, 15.0, 20.0]
    assert default_thresholds({"L1": 500.0})[:2] == [5.0, 10.0]
    assert default_thresholds({"L1": 501.0})[:2] == [10.0, 20.0]


def test_the_printed_lift_agrees_with_the_verdict_at_the_edge() -> None:
    # 40% of all leads convert and 47% of the MQLs: a lift of 1.175, which
    # one decimal printed as 1.2 beside "not selective".
    row = Row(5.0, reached=100, converted=47, leads=200, conversions=80)

    header, line = render([row], None).splitlines()
    lift = line.split()[header.split().index("lift")]

    assert row.lift == pytest.approx(1.175)
    assert row.verdict == "not selective"
    assert float(lift) < 1.2
    assert header.index("lift") + len("lift") == line.index(lift) + len(lift)


def test_the_lift_is_judged_as_printed() -> None:
    # 0.4785 / 0.4 = 1.196...: printed 1.20, so not called "not selective".
    row = Row(30.0, reached=2000, converted=957, leads=10000, conversions=4000)

    assert f"{row.lift:.2f}" == "1.20"
    assert row.verdict == "acceptable"


def test_a_score_no_config_can_give_is_refused_by_line(tmp_path: Path) -> None:
    scores = outputs(tmp_path, ("L1", 12.0), ("L2", 1e308))

    with pytest.raises(UnusableFile, match=r"outputs.jsonl:2: .*score 1e\+308"):
        read_peaks(scores)


def test_no_suggestion_says_why() -> None:
    # 1,000 leads, 300 of them converted: a base rate of 30%.
    unselective = [Row(10, 500, 150, 1000, 300), Row(20, 100, 31, 1000, 300)]
    out_of_band = [Row(10, 500, 40, 1000, 300), Row(20, 100, 60, 1000, 300)]
    too_few = [Row(10, 29, 20, 1000, 300)]

    assert no_recommendation(unselective) == (
        "no threshold is suggested: those with a converted share in the band "
        "convert less than 1.2 times as often as all leads (not selective)"
    )
    assert no_recommendation(out_of_band) == (
        "no threshold reached by 30 leads or more puts the converted share "
        "between 15% and 50%"
    )
    assert no_recommendation(too_few) == (
        "no threshold is reached by 30 leads, too few to judge"
    )


def test_empty_outputs_are_refused_like_unrelated_ones(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    empty = written(tmp_path, "outputs.jsonl", "")

    result = run("calibrate", "--outputs", str(empty), "--labels", str(labels))

    assert result.returncode == 1
    assert result.stderr == f"calibrate: {empty} holds no output events\n"


def versioned(tmp_path: Path, *events: tuple[str, float, str]) -> Path:
    """The events, and low scores of the first's version for L3-L5, so that
    every lead of LABELS has an output."""
    path = tmp_path / "outputs.jsonl"
    version = events[0][2]
    events += (("L3", 3.0, version), ("L4", 1.0, version), ("L5", 2.0, version))
    lines = [
        json.dumps(
            {
                "type": "score_changed",
                "lead_id": lead,
                "score": score,
                "rules_version": version,
            }
        )
        for lead, score, version in events
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_outputs_of_two_rules_versions_are_warned_of(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    scores = versioned(tmp_path, ("L1", 12.0, "v1+aa"), ("L2", 7.0, "v2+bb"))

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "calibrate: warning: the outputs come from 2 rules versions (v1+aa, "
        "v2+bb); their peaks are compared as if scored alike\n"
    )


def test_outputs_of_other_rules_than_the_configs_are_warned_of(
    tmp_path: Path,
) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    scores = versioned(tmp_path, ("L1", 12.0, "old+aa"), ("L2", 7.0, "old+aa"))

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    configured = load_config(environ={}).scoring.rules_version
    assert result.stderr == (
        f"calibrate: warning: the outputs were scored by rules old+aa, the "
        f"config's are {configured}; the sweep says how the scores of old+aa "
        "converted\n"
    )


def test_outputs_of_the_configs_rules_need_no_warning(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    configured = load_config(environ={}).scoring.rules_version
    scores = versioned(tmp_path, ("L1", 12.0, configured), ("L2", 7.0, configured))

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    assert (result.returncode, result.stderr) == (0, "")


def test_a_threshold_too_few_leads_reach_is_not_judged() -> None:
    # 10 of 25 converted would be 40%, "good", on a base rate of 20%.
    thin = Row(70.0, reached=25, converted=10, leads=1000, conversions=200)
    measured = Row(20.0, reached=300, converted=135, leads=1000, conversions=200)

    assert thin.verdict == "too few"
    assert render([thin], None).splitlines()[1].endswith("too few")
    assert recommend([thin]) is None
    assert recommend([measured, thin]) == measured
    assert no_recommendation([thin]) == (
        "no threshold is reached by 30 leads, too few to judge"
    )


def test_of_acceptable_thresholds_the_one_nearest_the_band_is_suggested() -> None:
    # 1,000 leads, 300 converted: 30%. None is in 25-40%.
    near = Row(20.0, reached=500, converted=206, leads=1000, conversions=300)
    edge = Row(45.0, reached=100, converted=49, leads=1000, conversions=300)

    assert (near.verdict, edge.verdict) == ("acceptable", "acceptable")
    assert recommend([near, edge]) == near
    assert why_recommended(near, [near, edge]) == (
        "none is judged good; of the 2 acceptable, the one whose share is "
        "nearest the good band"
    )
    assert why_recommended(edge, [edge]) == (
        "none is judged good, and this is the only acceptable one"
    )


def test_of_good_thresholds_the_highest_is_suggested() -> None:
    low = Row(20.0, reached=500, converted=130, leads=1000, conversions=200)
    high = Row(30.0, reached=200, converted=78, leads=1000, conversions=200)

    assert (low.verdict, high.verdict) == ("good", "good")
    assert recommend([low, high]) == high
    assert why_recommended(high, [low, high]) == "the highest threshold judged good"


def test_leads_without_a_label_are_counted_on_stderr(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    scores = outputs(tmp_path, ("L1", 12.0), ("L9", 7.0), ("L8", 3.0))

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"calibrate: 2 of the 3 leads in {scores} have no label in {labels} "
        "and are left out\n"
        f"calibrate: 4 of the 5 leads in {labels} have no output in {scores} and "
        "count as reaching no threshold (leads no rule scored, or labels of "
        "other data)\n"
    )


def test_trying_another_threshold_with_set_is_no_change_of_rules(
    tmp_path: Path,
) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    configured = load_config(environ={}).scoring.rules_version
    scores = versioned(tmp_path, ("L1", 12.0, configured), ("L2", 7.0, configured))

    def calibrated(*settings: str) -> str:
        result = run(
            "calibrate", "--outputs", str(scores), "--labels", str(labels), *settings
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert calibrated("--set", "scoring.mql.threshold=35") == ""
    assert calibrated("--set", "scoring.mql.min_engagement=5") == ""
    changed = calibrated(
        "--set", "scoring.mql.threshold=35", "--set", "scoring.half_life=20d"
    )
    assert changed.startswith("calibrate: warning: the outputs were scored by rules")


def test_the_closing_lines_never_deny_rows_the_table_shows_in_the_band() -> None:
    # 1,000 leads, 300 converted. 40% at 10 leads: in the band, but too few.
    low = Row(5.0, reached=600, converted=60, leads=1000, conversions=300)
    thin = Row(60.0, reached=10, converted=4, leads=1000, conversions=300)
    near = Row(20.0, reached=500, converted=206, leads=1000, conversions=300)

    assert no_recommendation([low, thin]) == (
        "no threshold reached by 30 leads or more puts the converted share "
        "between 15% and 50%"
    )
    assert recommend([low, thin, near]) == near
    assert why_recommended(near, [low, thin, near]) == (
        "none is judged good, and this is the only acceptable one"
    )


def test_the_mql_settings_from_the_environment_are_no_change_of_rules(
    tmp_path: Path,
) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    configured = load_config(environ={}).scoring.rules_version
    scores = versioned(tmp_path, ("L1", 12.0, configured), ("L2", 7.0, configured))

    result = run(
        "calibrate",
        *("--outputs", str(scores), "--labels", str(labels)),
        *("--set", "scoring.mql.hysteresis=5"),
        env={"SCORER_SCORING__MQL__THRESHOLD": "35"},
    )

    assert (result.returncode, result.stderr) == (0, "")


def test_a_file_valid_only_with_its_set_still_warns_of_other_rules(
    tmp_path: Path,
) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(
        default_config_path().read_text().replace("threshold: 60", "threshold: 1e5")
    )
    scores = versioned(tmp_path, ("L1", 12.0, "old+aa"), ("L2", 7.0, "old+aa"))

    result = run(
        "calibrate",
        *("--config", str(unreachable), "--set", "scoring.mql.threshold=60"),
        *("--outputs", str(scores), "--labels", str(labels)),
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("calibrate: warning: the outputs were scored")


def test_leads_without_a_label_add_no_rows(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    scores = outputs(tmp_path, ("L1", 12.0), ("L2", 7.0), ("L9", 50.0))

    result = run(
        "calibrate",
        *("--outputs", str(scores), "--labels", str(labels)),
        *("--set", "scoring.mql.min_engagement=null"),  # scores alone count
        *("--set", "scoring.mql.hysteresis=2"),
    )

    swept = [line.split()[0] for line in result.stdout.splitlines()[1:-1]]
    assert swept == ["5", "10", "60"]  # up to L1's 12, and the configured 60


def test_thresholds_no_config_can_take_are_not_swept(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", LABELS)
    scores = outputs(
        tmp_path, ("L1", 22.0), ("L2", 7.0), ("L3", 3.0), ("L4", 1.0), ("L5", 2.0)
    )

    result = run(
        "calibrate",
        *("--outputs", str(scores), "--labels", str(labels)),
        *("--set", "scoring.mql.min_engagement=null"),
        *("--set", "scoring.mql.hysteresis=10"),  # a threshold must be above it
    )

    swept = [line.split()[0] for line in result.stdout.splitlines()[1:-1]]
    assert swept == ["15", "20", "60"]


def test_the_sweep_ends_at_the_top_1_percent_of_all_labelled_leads() -> None:
    # 400 labelled leads; 4 reached 100, 1 reached 50, the rest no output:
    # the 1% at the top are the four, and the next lead's 50 ends the sweep.
    labels = {f"L{i}": i % 2 == 0 for i in range(400)}
    peaks = {"L0": 100.0, "L1": 100.0, "L2": 100.0, "L3": 100.0, "L4": 50.0}

    rows = sweep_labelled(peaks, labels, configured=60.0, hysteresis=10.0)

    assert [row.threshold for row in rows] == [
        15.0,
        20.0,
        25.0,
        30.0,
        35.0,
        40.0,
        45.0,
        50.0,
        60.0,
    ]


def test_state_lines_are_refused_as_outputs(tmp_path: Path) -> None:
    state = {
        "lead_id": "L1",
        "fit": 35.0,
        "engagement": 20.0,
        "score": 55.0,
        "as_of": "2026-12-01T10:00:00.000Z",
        "is_mql": False,
    }
    path = written(tmp_path, "state.jsonl", json.dumps(state) + "\n")

    with pytest.raises(UnusableFile) as caught:
        read_peaks(path)

    assert str(caught.value) == (
        f"{path}:1: not an output event (no type score_changed or mql_crossed; "
        "give what replay writes on stdout, not its --state-out)"
    )


@pytest.mark.parametrize(("conversions", "which"), [(0, "none"), (40, "all")])
def test_labels_of_one_outcome_are_said_to_tell_nothing(
    conversions: int, which: str
) -> None:
    row = Row(
        20.0,
        reached=30,
        converted=conversions * 30 // 40,
        leads=40,
        conversions=conversions,
    )

    assert no_recommendation([row]) == (
        f"no threshold is suggested: {which} of the 40 labelled leads converted, "
        "so the labels cannot tell leads apart"
    )


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("Lead_ID,Converted", "; the names are lower case, without spaces around them"),
        (
            "lead_id, converted",
            "; the names are lower case, without spaces around them",
        ),
        ("lead_id;converted", "; the columns are separated by commas"),
        ("id,outcome", ""),
    ],
)
def test_a_header_that_nearly_names_the_columns_says_how(
    tmp_path: Path, header: str, hint: str
) -> None:
    path = written(tmp_path, "labels.csv", f"{header}\nL1,1\n")

    with pytest.raises(UnusableFile) as caught:
        read_labels(path)

    assert str(caught.value).endswith(f"(expected lead_id,converted{hint})")


def test_labels_matching_only_once_trimmed_are_pointed_out(tmp_path: Path) -> None:
    labels = written(tmp_path, "labels.csv", "lead_id,converted\n L1 ,1\nL2,0\n")
    scores = outputs(tmp_path, ("L1", 12.0), ("L2", 7.0))

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"calibrate: 1 of the 2 leads in {scores} have no label in {labels} "
        "and are left out\n"
        f"calibrate: 1 of the 2 leads in {labels} have no output in {scores} and "
        "count as reaching no threshold (leads no rule scored, or labels of "
        "other data); 1 of them would match once spaces around the id are "
        "trimmed\n"
    )


def test_a_lead_whose_peak_equals_the_threshold_reaches_it() -> None:
    peaks = {"L1": 30.0, "L2": 29.99, "L3": 45.0}
    labels = {"L1": True, "L2": True, "L3": False}

    (row,) = sweep(peaks, labels, [30.0])

    assert (row.reached, row.converted) == (2, 1)


def test_a_score_with_exactly_min_engagement_is_a_peak(tmp_path: Path) -> None:
    path = tmp_path / "outputs.jsonl"
    events = [
        {"type": "score_changed", "lead_id": "L1", "score": 25.0, "engagement": 5.0},
        {"type": "score_changed", "lead_id": "L2", "score": 35.0, "engagement": 4.99},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))

    assert read_peaks(path, min_engagement=5.0) == {"L1": 25.0}


@pytest.mark.parametrize("converted", [25, 40])
def test_a_share_on_either_edge_of_the_good_band_is_good(converted: int) -> None:
    # 20% of all leads convert: 25% and 40% of the MQLs are lifts of 1.25 and 2.
    row = Row(30.0, reached=100, converted=converted, leads=1000, conversions=200)

    assert row.share == converted / 100
    assert row.verdict == "good"


def test_one_lead_far_above_the_rest_does_not_stretch_the_sweep() -> None:
    # 200 leads: the top 1% is two of them, and the next one's 20 ends the
    # sweep, not the single lead at 1000.
    peaks = {f"L{i}": 20.0 for i in range(199)}
    peaks["L199"] = 1000.0

    assert default_thresholds(peaks) == [5.0, 10.0, 15.0, 20.0]


def test_no_suggestion_says_which_thresholds_the_hysteresis_kept_out() -> None:
    # 300 labelled leads, 150 converted; rows at 5-25 are not swept.
    rows = [Row(30.0, reached=40, converted=30, leads=300, conversions=150)]

    line = closing_line(rows, left_out=[5.0, 10.0, 15.0, 20.0, 25.0], hysteresis=26.0)

    assert line == (
        "no threshold reached by 30 leads or more puts the converted share "
        "between 15% and 50%; thresholds up to 25, not above mql.hysteresis "
        "(26), are not swept"
    )


def test_counts_on_stderr_are_written_with_thousands_separators(
    tmp_path: Path,
) -> None:
    rows = "".join(f"L{n},{n % 2}\n" for n in range(1, 1201))
    labels = written(tmp_path, "labels.csv", "lead_id,converted\n" + rows)
    scores = outputs(tmp_path, ("L1", 12.0), ("L2", 7.0))

    result = run("calibrate", "--outputs", str(scores), "--labels", str(labels))

    assert result.returncode == 0, result.stderr
    assert f"1,198 of the 1,200 leads in {labels} have no output" in result.stderr
