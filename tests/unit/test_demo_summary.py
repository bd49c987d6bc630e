"""The demo's closing lines: what a newcomer reads about the MQL threshold."""

import pytest

from scorer.demo import Watch, _conversion, _summary


def _watch(mqls: int) -> Watch:
    return Watch(mql_up={f"lead-{n}" for n in range(mqls)})


@pytest.mark.parametrize(
    ("converted", "verdict"),
    [
        (1, "too low"),
        (2, "not selective"),  # 20%, as often as all the leads
        (3, "good"),
        (5, "acceptable"),
        (6, "too high"),
    ],
)
def test_conversion_names_the_band_the_share_falls_in(
    capsys: pytest.CaptureFixture[str], converted: int, verdict: str
) -> None:
    # Ten MQLs of which `converted` converted, among 40 leads, 8 converted.
    labels = {f"lead-{n}": n < converted for n in range(10)}
    labels |= {f"other-{n}": n < 8 - converted for n in range(30)}

    _conversion(_watch(10), labels, threshold=25)

    text = capsys.readouterr().out
    assert f"{converted} of 10 MQLs converted ({converted / 10:.1%}" in text
    assert "all leads 20.0%" in text
    assert f"Verdict: {verdict} (marketing-ops target 25%-40%" in text


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
