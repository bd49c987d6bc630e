import csv
import importlib.util
import json
import os
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from scorer.events import (
    DEFAULT_MAX_FUTURE_MS,
    EARLIEST_EVENT_MS,
    TimeBounds,
    parse_record,
    parse_time,
)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "x_education" / "convert.py"
# The public datasets: `make test DATA=DIR` passes DIR as SCORER_DATA; by
# default the folder beside the checkout, where it exists.
DATA_DIR = Path(os.environ.get("SCORER_DATA") or REPO.parent / "shared" / "data")
REAL_CSV = DATA_DIR / "x_education_leads" / "Leads_dev70.csv"
BOUNDS = TimeBounds(max_future_ms=DEFAULT_MAX_FUTURE_MS)

Record = dict[str, str | None]

# The real file's header line: its column names, in order.
HEADER_LINE = (
    "Prospect ID,Lead Number,Lead Origin,Lead Source,Do Not Email,Do Not Call,"
    "Converted,TotalVisits,Total Time Spent on Website,Page Views Per Visit,"
    "Last Activity,Country,Specialization,How did you hear about X Education,"
    "What is your current occupation,"
    "What matters most to you in choosing a course,Search,Magazine,"
    "Newspaper Article,X Education Forums,Newspaper,Digital Advertisement,"
    "Through Recommendations,Receive More Updates About Our Courses,Tags,"
    "Lead Quality,Update me on Supply Chain Content,Get updates on DM Content,"
    "Lead Profile,City,Asymmetrique Activity Index,Asymmetrique Profile Index,"
    "Asymmetrique Activity Score,Asymmetrique Profile Score,"
    "I agree to pay the amount through cheque,"
    "A free copy of Mastering The Interview,Last Notable Activity"
)
HEADER = next(csv.reader([HEADER_LINE]))


def _load_converter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("x_education_convert", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


convert = _load_converter()


def row(**values: str) -> dict[str, str]:
    """A synthetic row: every column "No" or empty unless given."""
    base = {name: "No" for name in HEADER}
    base.update(
        {
            "Prospect ID": "00000000-0000-4000-8000-000000000001",
            "Lead Number": "100001",
            "Lead Origin": "API",
            "Lead Source": "Google",
            "Converted": "0",
            "TotalVisits": "2",
            "Total Time Spent on Website": "300",
            "Page Views Per Visit": "2.5",
            "Last Activity": "Email Opened",
            "Country": "India",
            "Specialization": "Finance Management",
            "What is your current occupation": "Working Professional",
            "Tags": "",
            "Lead Quality": "",
            "Lead Profile": "Select",
            "City": "Select",
            "Last Notable Activity": "Email Opened",
        }
    )
    base.update(values)
    return base


def synthetic_rows() -> list[dict[str, str]]:
    return [
        row(),
        row(
            **{
                "Prospect ID": "00000000-0000-4000-8000-000000000002",
                "Lead Number": "100002",
                "Lead Origin": "Landing Page Submission",
                "Lead Source": "Direct Traffic",
                "Converted": "1",
                "TotalVisits": "3",
                "Total Time Spent on Website": "1500",
                "Page Views Per Visit": "4",
                "Last Activity": "Page Visited on Website",
                "A free copy of Mastering The Interview": "Yes",
                "Tags": "Will revert after reading the email",
                "Lead Quality": "High in Relevance",
            }
        ),
        row(
            **{
                "Prospect ID": "00000000-0000-4000-8000-000000000003",
                "Lead Number": "100003",
                "Lead Source": "",
                "TotalVisits": "",
                "Total Time Spent on Website": "0",
                "Page Views Per Visit": "",
                "Last Activity": "",
                "Last Notable Activity": "Modified",
                "Country": "unknown",
                "Specialization": "Select",
                "What is your current occupation": "",
            }
        ),
        row(
            **{
                "Prospect ID": "00000000-0000-4000-8000-000000000004",
                "Lead Number": "100004",
                "Converted": "1",
                "TotalVisits": "1",
                "Total Time Spent on Website": "0",
                "Page Views Per Visit": "1",
                "Last Activity": "Olark Chat Conversation",
            }
        ),
    ]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def by_lead(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = {}
    for record in records:
        grouped.setdefault(str(record["lead_id"]), []).append(record)
    return grouped


def firmographics(records: list[Record]) -> Record:
    (found,) = [record for record in records if record["type"] == "firmographics"]
    return found


def flipped(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The same rows with the label flipped and the leaky columns scrambled."""
    changed = []
    for original in rows:
        copy = dict(original)
        copy["Converted"] = "0" if original["Converted"] == "1" else "1"
        for name in convert.LEAKAGE_COLUMNS:
            copy[name] = f"scrambled {original[name]}"
        changed.append(copy)
    return changed


def test_events_per_lead_follow_the_real_aggregates() -> None:
    leads = by_lead(convert.convert(synthetic_rows()).records)

    kinds = {lead: Counter(str(r["type"]) for r in rs) for lead, rs in leads.items()}
    # 2 visits x 2.5 = 5 page views; Email Opened adds nothing.
    assert kinds["xedu:100001"] == Counter(page_view=5, firmographics=1)
    # 3 x 4 = 12, the landing page, the last page visit and the e-book.
    assert kinds["xedu:100002"] == Counter(
        page_view=14, content_download=1, firmographics=1
    )
    # No visits recorded and no web activity: only the firmographics.
    assert kinds["xedu:100003"] == Counter(firmographics=1)
    assert kinds["xedu:100004"] == Counter(page_view=2, firmographics=1)


def test_mapped_pages_and_attribution() -> None:
    leads = by_lead(convert.convert(synthetic_rows()).records)

    first_google = leads["xedu:100001"][0]
    assert str(first_google["url"]).endswith("?utm_source=google")
    assert first_google["referrer"] == "https://www.google.com/"
    direct = [r for r in leads["xedu:100002"] if r["type"] == "page_view"]
    assert all("utm_source" not in str(r["url"]) for r in direct)
    assert any(str(r["url"]).startswith("/lp/") for r in direct)
    assert leads["xedu:100004"][-1]["url"] == "/contact"
    downloads = [r for r in leads["xedu:100002"] if r["type"] == "content_download"]
    assert downloads[0]["asset_id"] == convert.EBOOK_ASSET_ID
    assert downloads[0]["asset_type"] == "ebook"


def test_firmographics_and_missing_values() -> None:
    leads = by_lead(convert.convert(synthetic_rows()).records)

    full = firmographics(leads["xedu:100001"])
    empty = firmographics(leads["xedu:100003"])
    assert full["industry"] == "Finance Management"
    assert full["title"] == "Working Professional"
    assert full["country"] == "India"
    assert full["company"] is None
    assert full["employees"] is None
    assert (empty["industry"], empty["title"], empty["country"]) == (None, None, None)


def test_labels() -> None:
    result = convert.convert(synthetic_rows())

    assert result.labels == [
        ("xedu:100001", 0),
        ("xedu:100002", 1),
        ("xedu:100003", 0),
        ("xedu:100004", 1),
    ]
    assert result.converted == 2


def test_every_record_is_accepted_by_the_scorer_and_in_range() -> None:
    records = convert.convert(synthetic_rows()).records

    # Four firmographics, and the 5, 14 + 1 and 2 events of the leads that
    # test_events_per_lead_follow_the_real_aggregates counts.
    assert len(records) == 4 + 5 + 15 + 2
    for record in records:
        parse_record(json.loads(json.dumps(record)), BOUNDS)
        stamp = record.get("occurred_at") or record["updated_at"]
        at_ms = parse_time(stamp, "occurred_at")
        assert EARLIEST_EVENT_MS < at_ms <= convert.BASE_TIME_MS


def test_stream_is_time_ordered_with_unique_ids() -> None:
    records = convert.convert(synthetic_rows()).records

    times = [parse_time(r.get("occurred_at") or r["updated_at"], "t") for r in records]
    ids = [r["event_id"] for r in records if r["type"] != "firmographics"]
    assert times == sorted(times)
    assert len(set(ids)) == len(ids)


def test_output_is_deterministic() -> None:
    assert convert.convert(synthetic_rows()) == convert.convert(synthetic_rows())


def test_no_record_depends_on_the_label_or_leaky_columns() -> None:
    rows = synthetic_rows()

    original = convert.convert(rows)
    changed = convert.convert(flipped(rows))

    assert changed.records == original.records
    assert [label for _, label in changed.labels] == [
        1 - label for _, label in original.labels
    ]


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("TotalVisits", "many", "not a number"),
        ("TotalVisits", "2.5", "out of range"),
        ("Page Views Per Visit", "-1", "out of range"),
        ("Converted", "yes", "not 0 or 1"),
        ("Lead Number", "", "empty"),
    ],
)
def test_bad_values_are_refused(column: str, value: str, problem: str) -> None:
    with pytest.raises(convert.ConversionError, match=f": {column} is {problem}$"):
        convert.convert([row(**{column: value})])


def test_duplicate_lead_numbers_are_refused() -> None:
    with pytest.raises(convert.ConversionError, match="duplicate"):
        convert.convert([row(), row()])


def test_main_writes_both_files(tmp_path: Path) -> None:
    source = tmp_path / "leads.csv"
    write_csv(source, synthetic_rows())
    events = tmp_path / "events.jsonl"
    labels = tmp_path / "labels.csv"

    code = convert.main([str(source), "--out", str(events), "--labels", str(labels)])

    assert code == 0
    lines = events.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 + 5 + 15 + 2
    assert labels.read_text(encoding="utf-8").splitlines() == [
        "lead_id,converted",
        "xedu:100001,0",
        "xedu:100002,1",
        "xedu:100003,0",
        "xedu:100004,1",
    ]


def test_main_refuses_a_csv_without_the_needed_columns(tmp_path: Path) -> None:
    source = tmp_path / "leads.csv"
    source.write_text("Prospect ID,Lead Number\nx,1\n", encoding="utf-8")
    out = tmp_path / "out"

    code = convert.main([str(source), "--out", str(out), "--labels", str(out)])

    assert code == 1


@pytest.mark.parametrize("change", ["drop the last cell", "add a cell"])
def test_main_refuses_a_row_whose_cells_do_not_match_the_header(
    tmp_path: Path, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "leads.csv"
    write_csv(source, synthetic_rows())
    lines = source.read_text(encoding="utf-8").splitlines()
    if change == "add a cell":
        lines[2] += ",x"
    else:
        lines[2] = lines[2].rsplit(",", 1)[0]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"

    code = convert.main([str(source), "--out", str(out), "--labels", str(out)])

    assert code == 1
    assert "line 3: not as many cells as the header has columns" in caplog.text


@pytest.mark.skipif(
    not REAL_CSV.is_file(), reason=f"no {REAL_CSV} (give the data: make test DATA=DIR)"
)
def test_real_data() -> None:
    with REAL_CSV.open(encoding="utf-8", newline="") as table:
        rows = list(csv.DictReader(table))

    result = convert.convert(rows)
    changed = convert.convert(flipped(rows))

    assert len(result.labels) == 6468
    assert result.converted == 2477
    assert result.counts["firmographics"] == 6468
    assert changed.records == result.records
    for record in result.records:
        parse_record(record, BOUNDS)


@pytest.mark.skipif(
    not REAL_CSV.is_file(), reason=f"no {REAL_CSV} (give the data: make test DATA=DIR)"
)
def test_synthetic_header_is_the_real_one() -> None:
    with REAL_CSV.open(encoding="utf-8", newline="") as table:
        assert next(csv.reader(table)) == HEADER
