"""Turn the X Education "Leads" table into scorer events and a labels file.

Dataset-specific example, not part of the `scorer` package. The table (one
row per lead of an online-course vendor, licence unknown) is read from the
path given on the command line and never copied into this repository.

The table holds aggregates, not events, so most of the output is invented.
What comes from the data and what does not:

Real, read from the row
    Prospect ID (only as the random seed), Lead Number (the lead id
    ``xedu:<Lead Number>``), TotalVisits, Total Time Spent on Website
    (seconds), Page Views Per Visit, Last Activity (Last Notable Activity
    when Last Activity is empty), Lead Origin, Lead Source, "A free copy of
    Mastering The Interview", What is your current occupation,
    Specialization and Country. The literal ``Select`` (an untouched drop
    down), ``unknown`` and empty cells are missing values.

Real, written only to the labels file
    Converted, as ``lead_id,converted``. No event depends on it.

Never read
    Tags, Lead Quality, Lead Profile and the Asymmetrique columns: sales
    staff fill them in, often after contact, so they leak the outcome.
    City, the "How did you hear" and newspaper/search flags and the rest are
    not read either; the event format has no place for them.

Invented, deterministically (seeded per lead from its Prospect ID)
    - Dates: each lead's first contact falls 14 to 194 days before
      2025-01-06 (`BASE_TIME_MS`); its visits start at random moments in
      the 28 days before that contact.
    - Visits and pages: TotalVisits visits holding round(TotalVisits x Page
      Views Per Visit) page views between them (at least one each), spread
      as evenly as the numbers allow. Missing TotalVisits means no visits.
    - Page times: the gap between two page views of a visit is the
      lead's Total Time per page view, jittered between 0.5x and 1.5x.
    - URLs, from a small fixed site map of a course vendor (`SITE_PAGES`):
      a visit lands on the home page, a course or a blog post; the first
      visit carries ``?utm_source=<Lead Source>`` and, for search engines
      and social sites, a referrer. Later pages are catalogue, blog, course
      or "intent" pages (curriculum, pricing, admissions); the share of
      intent pages grows with seconds per page view, up to 40 % at 180 s
      or more (`DEEP_READ_S`). Each lead has one favourite course.
    - Lead Origin "Landing Page Submission": a page view of the course's
      landing page (``/lp/<course>``) at first contact.
    - "A free copy of Mastering The Interview" = Yes: a download of that
      e-book (`EBOOK_ASSET_ID`, asset type ``ebook``) at first contact,
      because the offer is a tick box on the sign-up form.
    - Last Activity: one page view after first contact, for the values
      that happen on the website (`LAST_ACTIVITY_PAGES`); e-mail, SMS,
      phone and offline activities have no event type and emit nothing.
    - Firmographics: one record per lead at first contact with
      industry = Specialization, title = occupation, country = Country;
      company and employees are null because the data has neither.

Last Notable Activity is only consulted when Last Activity is empty: in this
table it either equals Last Activity or says "Modified".

Run from the repository root with the package importable
(``pip install -e .`` or ``PYTHONPATH=.``)::

    python examples/x_education/convert.py [CSV] --out events.jsonl \\
        --labels labels.csv
"""

import argparse
import csv
import json
import logging
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scorer.errors import InvalidRecord
from scorer.events import TimeBounds, format_time, parse_record

logger = logging.getLogger(__name__)

Record = dict[str, str | None]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CSV = (
    REPO_ROOT.parent / "shared" / "data" / "x_education_leads" / "Leads_dev70.csv"
)
LEAD_PREFIX = "xedu:"

# A fixed date keeps the output reproducible; every invented time falls
# before it, so no run ever emits a future event.
BASE_TIME_MS = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000
CONTACT_SPREAD_MS = 180 * DAY_MS  # first contacts spread over half a year
FOLLOW_UP_MAX_MS = 14 * DAY_MS  # last activity at most two weeks after contact
FOLLOW_UP_MIN_MS = 10 * 60_000  # and not in the same minute as the contact
VISIT_WINDOW_MS = 28 * DAY_MS  # visits in the four weeks before contact
VISIT_LEAD_MS = 60 * 60_000  # the last visit ends an hour before contact
EBOOK_DELAY_MS = 2_000  # the download starts as the sign-up form is sent
MIN_PAGE_GAP_MS = 1_000  # two page views of a visit are at least 1 s apart
SHORT_PAGE_GAP_MS = 4_000  # spread of gaps when the lead spent no time
DEEP_READ_S = 180.0  # seconds per page view at which intent pages peak
INTENT_SHARE_MAX = 0.4  # share of intent pages for the deepest readers
COURSE_SHARE = 0.4  # share of course overview pages
FAVOURITE_SHARE = 0.7  # course pages that show the lead's favourite course

LABEL_COLUMN = "Converted"
LEAKAGE_COLUMNS = (
    "Tags",
    "Lead Quality",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
)
# The only columns events and firmographics are made from.
EVENT_COLUMNS = (
    "Prospect ID",
    "Lead Number",
    "Lead Origin",
    "Lead Source",
    "TotalVisits",
    "Total Time Spent on Website",
    "Page Views Per Visit",
    "Last Activity",
    "Last Notable Activity",
    "A free copy of Mastering The Interview",
    "What is your current occupation",
    "Specialization",
    "Country",
)
MISSING_VALUES = frozenset({"", "select", "unknown"})

COURSES = (
    "data-science",
    "digital-marketing",
    "business-analytics",
    "product-management",
    "finance-for-managers",
    "hr-analytics",
    "supply-chain-management",
    "full-stack-development",
)
BLOG_POSTS = (
    "/blog/career-switch-at-thirty",
    "/blog/what-recruiters-look-for",
    "/blog/online-vs-classroom-learning",
    "/blog/salary-guide-2024",
)
# (url, category) of every page that is not about one course.
SITE_PAGES: Mapping[str, tuple[str, str]] = {
    "home": ("/", "home"),
    "catalogue": ("/courses", "catalogue"),
    "about": ("/about", "about"),
    "reviews": ("/reviews", "reviews"),
    "pricing": ("/pricing", "pricing"),
    "admissions": ("/admissions", "admissions"),
    "contact": ("/contact", "contact"),
    "enquiry": ("/enquire", "enquiry"),
    "enquiry_sent": ("/enquire/thank-you", "enquiry"),
    "newsletter": ("/newsletter/latest", "newsletter"),
}
BROWSE_PAGES = ("home", "catalogue", "about", "reviews")
COURSE_URL = "/courses/{course}"
CURRICULUM_URL = "/courses/{course}/curriculum"
LANDING_URL = "/lp/{course}"
EBOOK_ASSET_ID = "ebooks/mastering-the-interview.pdf"
EBOOK_ASSET_TYPE = "ebook"

# Last Activity values that happen on the website, as (url, category);
# "{course}" is the lead's favourite course.
LAST_ACTIVITY_PAGES: Mapping[str, tuple[str, str]] = {
    "Page Visited on Website": (COURSE_URL, "course"),
    "Form Submitted on Website": SITE_PAGES["enquiry"],
    "Olark Chat Conversation": SITE_PAGES["contact"],
    "Converted to Lead": SITE_PAGES["enquiry_sent"],
    "Email Link Clicked": (
        COURSE_URL + "?utm_source=newsletter&utm_medium=email",
        "course",
    ),
    "View in browser link Clicked": SITE_PAGES["newsletter"],
}
# Lead sources whose visitors arrive with a referrer we can name.
SOURCE_REFERRERS: Mapping[str, str] = {
    "google": "https://www.google.com/",
    "bing": "https://www.bing.com/",
    "facebook": "https://www.facebook.com/",
    "youtubechannel": "https://www.youtube.com/",
}
UNTRACKED_SOURCES = frozenset({"direct_traffic"})


class ConversionError(Exception):
    """A row cannot be converted; the message names the lead and column."""


@dataclass(frozen=True, slots=True)
class Lead:
    """The label-free facts of one row that the output is built from."""

    prospect_id: str
    lead_number: str
    origin: str | None
    source: str | None
    visits: int
    time_on_site_s: float
    views_per_visit: float
    last_activity: str | None
    wants_ebook: bool
    occupation: str | None
    specialization: str | None
    country: str | None

    @property
    def lead_id(self) -> str:
        return LEAD_PREFIX + self.lead_number


@dataclass(slots=True)
class Conversion:
    """Everything one run produces, in output order."""

    records: list[Record] = field(default_factory=list)
    labels: list[tuple[str, int]] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(str(record["type"]) for record in self.records)

    @property
    def converted(self) -> int:
        return sum(label for _, label in self.labels)


class _Draws:
    """Random numbers from one lead's seed.

    Only `random.random()` is used because Python promises that method's
    sequence for a given seed across versions, unlike `randint` or `choice`.
    """

    def __init__(self, seed: str) -> None:
        self._random = random.Random(seed)

    def unit(self) -> float:
        return self._random.random()

    def below(self, limit: int) -> int:
        return min(limit - 1, int(self.unit() * limit))

    def pick(self, options: Sequence[str]) -> str:
        return options[self.below(len(options))]


@dataclass(frozen=True, slots=True)
class _Timed:
    at_ms: int
    record: Record


def convert(rows: Iterable[Mapping[str, str]]) -> Conversion:
    """Build the records of every row, ordered by time, and the labels."""
    timed: list[_Timed] = []
    result = Conversion()
    seen: set[str] = set()

    for row in rows:
        lead = read_lead(row)
        if lead.lead_number in seen:
            raise ConversionError(f"lead {lead.lead_number}: duplicate Lead Number")
        seen.add(lead.lead_number)
        timed += lead_records(lead)
        result.labels.append((lead.lead_id, read_label(row, lead.lead_number)))

    # One time-ordered stream, as a live feed would deliver it; ties keep
    # the row order because the sort is stable.
    timed.sort(key=lambda item: item.at_ms)
    result.records = [item.record for item in timed]
    _check_records(result.records)
    return result


def read_lead(row: Mapping[str, str]) -> Lead:
    """The columns in `EVENT_COLUMNS`, parsed; nothing else is looked at."""
    number = _required(row, "Lead Number", "?")
    last_activity = _text(row, "Last Activity")
    if last_activity is None:
        last_activity = _text(row, "Last Notable Activity")

    return Lead(
        prospect_id=_required(row, "Prospect ID", number),
        lead_number=number,
        origin=_text(row, "Lead Origin"),
        source=_text(row, "Lead Source"),
        visits=int(_number(row, "TotalVisits", number, whole=True)),
        time_on_site_s=_number(row, "Total Time Spent on Website", number),
        views_per_visit=_number(row, "Page Views Per Visit", number),
        last_activity=last_activity,
        wants_ebook=_text(row, "A free copy of Mastering The Interview") == "Yes",
        occupation=_text(row, "What is your current occupation"),
        specialization=_text(row, "Specialization"),
        country=_text(row, "Country"),
    )


def read_label(row: Mapping[str, str], lead_number: str) -> int:
    value = row.get(LABEL_COLUMN, "").strip()
    if value not in ("0", "1"):
        raise ConversionError(f"lead {lead_number}: {LABEL_COLUMN} is not 0 or 1")
    return int(value)


def lead_records(lead: Lead) -> list[_Timed]:
    """One lead's firmographics and events, each with its time."""
    draws = _Draws(lead.prospect_id)
    contact_ms = BASE_TIME_MS - FOLLOW_UP_MAX_MS - int(draws.unit() * CONTACT_SPREAD_MS)
    course = draws.pick(COURSES)

    moments = _visits(lead, draws, contact_ms, course)
    moments += _sign_up(lead, contact_ms, course)
    moments += _last_activity(lead, draws, contact_ms, course)
    moments.sort(key=lambda moment: moment[0])

    timed = [_Timed(contact_ms, _firmographics(lead, contact_ms))]
    for sequence, (at_ms, record) in enumerate(moments, start=1):
        # Ids come from the lead number and time order, never from the row's
        # text, which would make them depend on the label.
        record["event_id"] = f"{lead.lead_id}:{sequence:04d}"
        timed.append(_Timed(at_ms, record))
    return timed


def main(argv: Sequence[str] | None = None) -> int:
    """Convert the CSV; write the events and the labels files."""
    args = _arguments().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    source = Path(args.csv) if args.csv else DEFAULT_CSV
    if not source.is_file():
        logger.error("leads CSV not found path=%s", source)
        return 2

    try:
        with source.open(encoding="utf-8", newline="") as table:
            result = convert(_rows(csv.DictReader(table)))
    except ConversionError as exc:
        logger.error("conversion failed: %s", exc)
        return 1
    except UnicodeDecodeError:
        logger.error("conversion failed: the CSV is not UTF-8 text")
        return 1

    try:
        _write_records(result.records, Path(args.out))
        _write_labels(result.labels, Path(args.labels))
    except OSError as exc:
        logger.error("cannot write output error=%s", exc)
        return 1
    sys.stderr.write("\n".join(_summary(result)) + "\n")
    return 0


def _visits(
    lead: Lead, draws: _Draws, contact_ms: int, course: str
) -> list[tuple[int, Record]]:
    if lead.visits == 0:
        return []
    pages = _pages_per_visit(lead, draws)
    seconds_per_page = lead.time_on_site_s / sum(pages)
    starts = sorted(
        contact_ms - VISIT_LEAD_MS - int(draws.unit() * VISIT_WINDOW_MS)
        for _ in range(lead.visits)
    )

    moments: list[tuple[int, Record]] = []
    for index, (start_ms, count) in enumerate(zip(starts, pages, strict=True)):
        visit = _Visit(lead, draws, course, seconds_per_page, first=index == 0)
        moments += visit.page_views(start_ms, count)
    return moments


@dataclass(frozen=True, slots=True)
class _Visit:
    lead: Lead
    draws: _Draws
    course: str
    seconds_per_page: float
    first: bool

    def page_views(self, start_ms: int, count: int) -> list[tuple[int, Record]]:
        url, category, referrer = _landing(
            self.lead, self.draws, self.course, self.first
        )
        at_ms = start_ms
        moments = [(at_ms, _page_view(self.lead, at_ms, url, category, referrer))]

        depth = min(1.0, self.seconds_per_page / DEEP_READ_S)
        for _ in range(count - 1):
            at_ms += _page_gap_ms(self.draws, self.seconds_per_page)
            url, category = _next_page(self.draws, depth, self.course)
            moments.append((at_ms, _page_view(self.lead, at_ms, url, category, None)))
        return moments


def _pages_per_visit(lead: Lead, draws: _Draws) -> list[int]:
    # The real aggregates fix the total; which visits get the odd extra
    # page view is left to chance.
    total = max(lead.visits, _round_half_up(lead.visits * lead.views_per_visit))
    base, extra = divmod(total, lead.visits)
    keys = [draws.unit() for _ in range(lead.visits)]
    lucky = set(sorted(range(lead.visits), key=keys.__getitem__)[:extra])
    return [base + (index in lucky) for index in range(lead.visits)]


def _landing(
    lead: Lead, draws: _Draws, course: str, first: bool
) -> tuple[str, str, str | None]:
    roll = draws.below(3)
    if roll == 0:
        url, category = SITE_PAGES["home"]
    elif roll == 1:
        url, category = COURSE_URL.format(course=course), "course"
    else:
        url, category = draws.pick(BLOG_POSTS), "blog"
    if not first:
        return url, category, None

    # Only the first visit carries the attribution of the real Lead Source.
    slug = _slug(lead.source)
    if slug is None or slug in UNTRACKED_SOURCES:
        return url, category, None
    return f"{url}?utm_source={slug}", category, SOURCE_REFERRERS.get(slug)


def _next_page(draws: _Draws, depth: float, course: str) -> tuple[str, str]:
    roll = draws.unit()
    intent_share = INTENT_SHARE_MAX * depth
    if roll < intent_share:
        choice = draws.below(3)
        if choice == 0:
            return CURRICULUM_URL.format(course=course), "curriculum"
        return SITE_PAGES["pricing" if choice == 1 else "admissions"]
    if roll < intent_share + COURSE_SHARE:
        shown = course if draws.unit() < FAVOURITE_SHARE else draws.pick(COURSES)
        return COURSE_URL.format(course=shown), "course"
    if draws.unit() < 0.5:
        return draws.pick(BLOG_POSTS), "blog"
    return SITE_PAGES[draws.pick(BROWSE_PAGES)]


def _page_gap_ms(draws: _Draws, seconds_per_page: float) -> int:
    if seconds_per_page <= 0:
        return MIN_PAGE_GAP_MS + int(draws.unit() * SHORT_PAGE_GAP_MS)
    jittered_ms = (0.5 + draws.unit()) * seconds_per_page * 1000
    return max(MIN_PAGE_GAP_MS, int(jittered_ms))


def _sign_up(lead: Lead, contact_ms: int, course: str) -> list[tuple[int, Record]]:
    moments: list[tuple[int, Record]] = []
    if lead.origin == "Landing Page Submission":
        url = LANDING_URL.format(course=course)
        record = _page_view(lead, contact_ms, url, "landing_page", None)
        moments.append((contact_ms, record))
    if lead.wants_ebook:
        at_ms = contact_ms + EBOOK_DELAY_MS
        record = _activity(lead, "content_download", at_ms)
        record["asset_id"] = EBOOK_ASSET_ID
        record["asset_type"] = EBOOK_ASSET_TYPE
        moments.append((at_ms, record))
    return moments


def _last_activity(
    lead: Lead, draws: _Draws, contact_ms: int, course: str
) -> list[tuple[int, Record]]:
    # The draw is taken for every lead, mapped or not, so that a lead's other
    # invented values never shift with its Last Activity.
    delay_ms = FOLLOW_UP_MIN_MS + int(
        draws.unit() * (FOLLOW_UP_MAX_MS - FOLLOW_UP_MIN_MS)
    )
    page = LAST_ACTIVITY_PAGES.get(lead.last_activity or "")
    if page is None:
        return []

    url, category = page
    at_ms = contact_ms + delay_ms
    record = _page_view(lead, at_ms, url.format(course=course), category, None)
    return [(at_ms, record)]


def _page_view(
    lead: Lead, at_ms: int, url: str, category: str, referrer: str | None
) -> Record:
    record = _activity(lead, "page_view", at_ms)
    record["url"] = url
    record["category"] = category
    if referrer is not None:
        record["referrer"] = referrer
    return record


def _activity(lead: Lead, kind: str, at_ms: int) -> Record:
    # event_id is filled in once the lead's events are in time order.
    return {
        "event_id": None,
        "lead_id": lead.lead_id,
        "type": kind,
        "occurred_at": format_time(at_ms),
    }


def _firmographics(lead: Lead, at_ms: int) -> Record:
    return {
        "lead_id": lead.lead_id,
        "type": "firmographics",
        "company": None,
        "employees": None,
        "industry": lead.specialization,
        "title": lead.occupation,
        "country": lead.country,
        "updated_at": format_time(at_ms),
    }


def _check_records(records: Iterable[Record]) -> None:
    # A record the scorer would refuse is a bug here, not bad input.
    bounds = TimeBounds()
    for record in records:
        try:
            parse_record(record, bounds)
        except InvalidRecord as exc:
            raise ConversionError(
                f"lead {record['lead_id']}: invalid {exc.field}: {exc.message}"
            ) from exc


def _required(row: Mapping[str, str], column: str, lead_number: str) -> str:
    value = _text(row, column)
    if value is None:
        raise ConversionError(f"lead {lead_number}: {column} is empty")
    return value


def _text(row: Mapping[str, str], column: str) -> str | None:
    value = (row.get(column) or "").strip()
    return None if value.lower() in MISSING_VALUES else value


def _number(
    row: Mapping[str, str], column: str, lead_number: str, whole: bool = False
) -> float:
    # A missing count means the vendor recorded no visits, so it counts as 0.
    text = _text(row, column)
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError as exc:
        raise ConversionError(f"lead {lead_number}: {column} is not a number") from exc

    usable = math.isfinite(value) and value >= 0 and (value.is_integer() or not whole)
    if not usable:
        raise ConversionError(f"lead {lead_number}: {column} is out of range")
    return value


def _round_half_up(value: float) -> int:
    # round() rounds halves to even; a count of 2.5 page views should be 3.
    return math.floor(value + 0.5)


def _slug(text: str | None) -> str | None:
    if text is None:
        return None
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or None


def _rows(reader: "csv.DictReader[str]") -> Iterable[dict[str, str]]:
    if reader.fieldnames is None:
        raise ConversionError("the CSV is empty: it has no header line")
    missing = [
        name
        for name in (*EVENT_COLUMNS, LABEL_COLUMN)
        if name not in (reader.fieldnames or ())
    ]
    if missing:
        raise ConversionError(f"columns missing from the CSV: {', '.join(missing)}")

    # DictReader fills a short row's last columns with None and puts a long
    # row's extra cells under None: either means the row's cells are not
    # where the header says, so none of its values can be trusted.
    for row in reader:
        if None in row or None in row.values():
            raise ConversionError(
                f"line {reader.line_num}: not as many cells as the header has columns"
            )
        yield row


def _write_records(records: Iterable[Record], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def _write_labels(labels: Iterable[tuple[str, int]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("lead_id", "converted"))
        writer.writerows(labels)


def _summary(result: Conversion) -> list[str]:
    counts = result.counts
    lines = [f"leads={len(result.labels)}", f"converted={result.converted}"]
    lines += [f"records.{kind}={n}" for kind, n in sorted(counts.items())]
    return lines


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert the X Education leads CSV to scorer events."
    )
    parser.add_argument(
        "csv", nargs="?", help=f"leads CSV (default: {DEFAULT_CSV} if it exists)"
    )
    parser.add_argument("--out", required=True, help="events JSON-lines file to write")
    parser.add_argument("--labels", required=True, help="labels CSV file to write")
    return parser


if __name__ == "__main__":
    sys.exit(main())
