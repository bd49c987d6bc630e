"""Synthetic B2B website and marketing traffic for the benchmarks.

The mix follows what a B2B site sees: most page views are product pages and
docs that no rule scores, blog reads are common, pricing and demo pages are
rare, a few visitors look for jobs. A minority of leads make most of the
traffic (a log-normal spread), every lead has one CRM record, and event times are
spread over the last weeks with a few events arriving late, as mobile clients
and retried beacons do. A seed makes the traffic repeatable.
"""

import itertools
import random
import uuid
from dataclasses import dataclass
from typing import Any

from scorer.events import format_time

# Leads with a CRM record are one in twenty records: each lead has one.
FIRMOGRAPHICS_SHARE = 0.05
# Events this much behind their neighbours in the stream; most are on time.
LATE_SHARE = 0.02
LATE_BY_MAX_MS = 2 * 86_400_000  # some beyond the default 1 d lateness
SPAN_MS = 30 * 86_400_000  # traffic of the last month
ACTIVITY_SIGMA = 1.0  # log-normal spread of per-lead activity: top lead ~30x median

ROLE_PAGE_VIEWS = "page_views"
ROLE_DOWNLOADS = "content_downloads"
ROLE_WEBINARS = "webinars"
ROLE_FIRMOGRAPHICS = "firmographics"
EVENT_ROLES = (ROLE_PAGE_VIEWS, ROLE_DOWNLOADS, ROLE_WEBINARS)

# (weight, URL path): the default rules score /demo, /pricing, /careers,
# /jobs and /blog/; the rest match no rule.
PAGES: tuple[tuple[float, str], ...] = (
    (0.30, "/product/features"),
    (0.12, "/docs/getting-started"),
    (0.08, "/"),
    (0.30, "/blog/scoring-leads-with-intent"),
    (0.08, "/pricing"),
    (0.02, "/demo"),
    (0.02, "/careers/backend-engineer"),
    (0.01, "/jobs"),
    (0.07, "/customers"),
)
ASSET_TYPES = (
    (0.40, "case_study"),
    (0.30, "whitepaper"),
    (0.30, "ebook"),
)
INDUSTRIES = ("Software", "Financial Services", "Retail", "Education", "Health Care")
TITLES = ("VP Sales", "Marketing Manager", "Head of Growth", "Analyst", "Founder")
COUNTRIES = ("DE", "US", "FR", "GB", "NL", "IN")
# (weight, role) of the activity events.
EVENT_MIX = ((0.85, ROLE_PAGE_VIEWS), (0.10, ROLE_DOWNLOADS), (0.05, ROLE_WEBINARS))


@dataclass(frozen=True, slots=True)
class Record:
    """One input record: the topic role it goes to and its fields."""

    role: str
    lead_id: str
    fields: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.fields.get("event_id", ""))


class Traffic:
    """Makes records; `random.Random(seed)` makes them repeatable."""

    def __init__(self, leads: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.lead_ids = [f"lead-{number:06d}" for number in range(leads)]
        weights = [self.rng.lognormvariate(0.0, ACTIVITY_SIGMA) for _ in self.lead_ids]
        # Cumulative once: `choices` would sum 5,000 weights on every call.
        self.cum_weights = list(itertools.accumulate(weights))

    def backlog(self, count: int, end_ms: int) -> list[Record]:
        """`count` records of the month before `end_ms`, in arrival order."""
        firmographics = int(count * FIRMOGRAPHICS_SHARE)
        start_ms = end_ms - SPAN_MS
        times = sorted(self.rng.randrange(start_ms, end_ms) for _ in range(count))
        records = [self.activity(at_ms) for at_ms in times[firmographics:]]
        self._delay_some(records)

        # Each CRM record lands early in the lead's history, as a sign-up does.
        for index in range(firmographics):
            lead_id = self.lead_ids[index % len(self.lead_ids)]
            slot = self.rng.randrange(0, max(1, len(records) // 10))
            records.insert(slot, self.firmographics(lead_id, times[index]))
        return records

    def steady(self, count: int, start_ms: int, rate: float) -> list[Record]:
        """Live activity: `count` records stamped `1 / rate` s apart."""
        return [self.activity(start_ms + int(i * 1000 / rate)) for i in range(count)]

    def warm_up(self, at_ms: int) -> list[Record]:
        """One record per topic that every loop answers with an output."""
        lead_id = "lead-warm-up"
        firmographics = self.firmographics(lead_id, at_ms)
        firmographics.fields["employees"] = 500
        common: dict[str, Any] = {"lead_id": lead_id, "occurred_at": format_time(at_ms)}
        activities: dict[str, dict[str, Any]] = {
            ROLE_PAGE_VIEWS: {"type": "page_view", "url": "/pricing"},
            ROLE_DOWNLOADS: {
                "type": "content_download",
                "asset_id": "whitepaper-1",
                "asset_type": "whitepaper",
            },
            ROLE_WEBINARS: {
                "type": "webinar",
                "webinar_id": "webinar-1",
                "status": "attended",
                "minutes_watched": 30.0,
            },
        }
        records = [firmographics]
        for role, fields in activities.items():
            event_id = f"warm-up-{role}-{at_ms}"
            records.append(
                Record(role, lead_id, {"event_id": event_id} | common | fields)
            )
        return records

    def activity(self, at_ms: int) -> Record:
        lead_id = self.rng.choices(self.lead_ids, cum_weights=self.cum_weights)[0]
        role = self._pick(EVENT_MIX)
        fields: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "lead_id": lead_id,
            "occurred_at": format_time(at_ms),
        }
        if role == ROLE_PAGE_VIEWS:
            fields |= {"type": "page_view", "url": self._url()}
        elif role == ROLE_DOWNLOADS:
            fields |= self._download()
        else:
            fields |= self._webinar()
        return Record(role, lead_id, fields)

    def firmographics(self, lead_id: str, at_ms: int) -> Record:
        pick = self.rng.choice
        fields = {
            "lead_id": lead_id,
            "type": "firmographics",
            "company": f"Company {self.rng.randrange(2_000)}",
            "employees": int(self.rng.lognormvariate(5.5, 1.8)),
            "industry": pick(INDUSTRIES),
            "title": pick(TITLES),
            "country": pick(COUNTRIES),
            "updated_at": format_time(at_ms),
        }
        return Record(ROLE_FIRMOGRAPHICS, lead_id, fields)

    def _url(self) -> str:
        path = self._pick(PAGES)
        return f"https://www.example.com{path}?utm_source=newsletter"

    def _download(self) -> dict[str, Any]:
        asset_type = self._pick(ASSET_TYPES)
        return {
            "type": "content_download",
            "asset_id": f"{asset_type}-{self.rng.randrange(40)}",
            "asset_type": asset_type,
        }

    def _webinar(self) -> dict[str, Any]:
        attended = self.rng.random() < 0.4
        return {
            "type": "webinar",
            "webinar_id": f"webinar-{self.rng.randrange(12)}",
            "status": "attended" if attended else "registered",
            "minutes_watched": round(self.rng.uniform(0, 60), 1) if attended else 0.0,
        }

    def _delay_some(self, records: list[Record]) -> None:
        """Move a few records later in the stream: they arrive late."""
        for _ in range(int(len(records) * LATE_SHARE)):
            index = self.rng.randrange(len(records))
            late = records.pop(index)
            step = self.rng.randrange(1, len(records) * LATE_BY_MAX_MS // SPAN_MS + 2)
            records.insert(min(len(records), index + step), late)

    def _pick(self, table: tuple[tuple[float, str], ...]) -> str:
        weights = [weight for weight, _ in table]
        return self.rng.choices([value for _, value in table], weights)[0]
