"""The demo's X Education part refuses a leads file it cannot use, in one line.

An empty or non-UTF-8 `Leads_dev70.csv` ended `scorer demo --data DIR` in a
CalledProcessError traceback, the converter's own reason swallowed.
"""

from pathlib import Path

import pytest

from scorer.demo import _convert_x_education
from scorer.errors import ScorerError

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
