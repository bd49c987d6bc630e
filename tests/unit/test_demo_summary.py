"""The demo's closing lines: what a newcomer reads about the MQL threshold."""

import pytest

from scorer.demo import Watch, _conversion, _summary


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
