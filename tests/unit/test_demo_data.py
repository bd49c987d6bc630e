"""The demo refuses inputs it cannot use, in one line.

An empty or non-UTF-8 `Leads_dev70.csv` ended `scorer demo --data DIR` in a
CalledProcessError traceback, the converter's own reason swallowed; an
installed wheel, which has no examples, failed only after both servers had
started.
"""

from pathlib import Path

import pytest

from scorer import demo
from scorer.demo import _convert_x_education
from scorer.errors import ScorerError
from scorer.sandbox import stack

HEADER = (
    "Prospect ID,Lead Number,Lead Origin,Lead Source,Converted,TotalVisits,"
    "Total Time Spent on Website,Page Views Per Visit,Last Activity,Country,"
    "Specialization,What is your current occupation,"
    "A free copy of Mastering The Interview,Last Notable Activity\n"
)


def refusal(tmp_path: Path, content: bytes) -> str:
    leads = tmp_path / "Leads_dev70.csv"
    leads.write_bytes(content)
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.csv"

    with pytest.raises(ScorerError) as caught:
        _convert_x_education(leads, events, labels)
    return str(caught.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "conversion failed: the CSV is empty: it has no header line"),
        (
            HEADER.encode() + b"\xff\xfe,1\n",
            "conversion failed: the CSV is not UTF-8 text",
        ),
        (b"a,b\n1,2\n", "conversion failed: columns missing from the CSV: Prospect"),
    ],
)
def test_the_converters_reason_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    message = refusal(tmp_path, content)

    leads = tmp_path / "Leads_dev70.csv"
    assert message.startswith(f"{leads}: cannot convert the X Education leads: ")
    assert reason in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_a_file_of_no_leads_is_refused(tmp_path: Path) -> None:
    """The summary divided by the number of leads, zero here."""
    message = refusal(tmp_path, HEADER.encode())

    assert message == f"{tmp_path / 'Leads_dev70.csv'}: holds no leads"


def test_without_the_repositorys_examples_the_demo_stops_before_any_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As from a wheel: the package without the examples folder beside it."""
    for name in ("ACCESS_LOG", "ACCESS_RULES", "XEDU_RULES", "XEDU_CONVERTER"):
        path = getattr(demo, name).relative_to(demo.REPO_ROOT)
        monkeypatch.setattr(demo, name, tmp_path / path)
    monkeypatch.setattr(demo, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(stack, "RedisServer", _no_server)
    monkeypatch.setattr(stack, "KafkaBroker", _no_server)

    with pytest.raises(ScorerError) as caught:
        demo.main()

    assert str(caught.value) == (
        "scorer demo runs in a clone of the repository: it reads "
        f"examples/access_log/apache_logs, which is not in {tmp_path} (an "
        "installed package has no examples); clone the repository and run "
        "`make demo` there"
    )


def _no_server() -> None:
    raise AssertionError("a server was started")
