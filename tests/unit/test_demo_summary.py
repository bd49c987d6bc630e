"""The demo's closing lines: what a newcomer reads about the MQL threshold."""

from datetime import datetime, timedelta, timezone

import pytest

from scorer.demo import ALERTS_SHOWN, Watch, _alert, _conversion, _summary


def _watch(mqls: int) -> Watch:
    return Watch(mql_up={f"lead-{n}" for n in range(mqls)})


@pytest.mark.parametrize(
    ("converted", "verdict"),
    [
        (10, "too low"),
        (20, "not selective"),  # 20%, as often as all the leads
        (30, "good"),
        (50, "acceptable"),
        (60, "too high"),
    ],
)
def test_conversion_names_the_band_the_share_falls_in(
    capsys: pytest.CaptureFixture[str], converted: int, verdict: str
) -> None:
    # 100 MQLs of which `converted` converted, among 400 leads, 80 converted.
    labels = {f"lead-{n}": n < converted for n in range(100)}
    labels |= {f"other-{n}": n < 80 - converted for n in range(300)}

    _conversion(_watch(100), labels, threshold=25)

    text = capsys.readouterr().out
    assert f"{converted} of 100 MQLs converted ({converted / 100:.1%}" in text
    assert "all leads 20.0%" in text
    assert f"Verdict: {verdict} (marketing-ops target 25%-40%" in text


def test_a_share_of_a_few_mqls_is_not_judged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = {f"lead-{n}": n < 3 for n in range(10)}
    labels |= {f"other-{n}": n < 5 for n in range(30)}

    _conversion(_watch(10), labels, threshold=25)

    assert "Verdict: too few (marketing-ops" in capsys.readouterr().out


def test_summary_counts_records_processed_not_scored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    watch = _watch(2)
    watch.leads = {"lead-0", "lead-1", "lead-2"}
    watch.outputs = 7

    _summary(watch, records=50, elapsed_s=2.0)

    text = capsys.readouterr().out
    assert "50 records processed in 2.00 s (25 events/s" in text
    assert "3 leads scored, 2 became MQLs" in text


def test_an_alert_names_its_lead_score_and_event_time_in_utc(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An event time read with an offset is shown in UTC, saying so.
    at = datetime(2015, 5, 17, 12, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    crossed = {
        "type": "mql_crossed",
        "direction": "up",
        "lead_id": "lead-7",
        "score": 61.234,
        "fit": 25.0,
        "engagement": 36.234,
        "occurred_at": at,
    }
    watch = Watch()

    for _ in range(ALERTS_SHOWN + 2):
        _alert(crossed, watch)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "  MQL ALERT  lead-7  score 61.23 (fit 25.00, engagement 36.23)"
        "  at 2015-05-17 10:30:05 UTC"
    )
    assert len(lines) == ALERTS_SHOWN + 1
    assert lines[-1] == "  ... more MQL alerts are counted in the summary"
    assert (watch.outputs, watch.mql_up) == (ALERTS_SHOWN + 2, {"lead-7"})
