"""`scorer calibrate`: choose the MQL threshold from real conversions.

Marketing operations judge a threshold by the leads that reach it: when 25-40%
of them become sales-qualified it is right; below 15% it is too low (sales
drown in weak leads), above 50% too high (good leads wait). This reads the
scorer's output events and a labels file and prints, for a sweep of
thresholds, how many leads reached each and what share converted.
"""

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

GOOD_BAND = (0.25, 0.40)
# A share measured on fewer leads than this is noise, not a verdict.
MIN_REACHED = 30
TOO_LOW_BELOW = 0.15
TOO_HIGH_ABOVE = 0.50


@dataclass(frozen=True, slots=True)
class Row:
    threshold: float
    reached: int
    converted: int
    leads: int
    conversions: int

    @property
    def share(self) -> float:
        return self.converted / self.reached if self.reached else 0.0

    @property
    def recall(self) -> float:
        return self.converted / self.conversions if self.conversions else 0.0

    @property
    def verdict(self) -> str:
        if self.reached == 0:
            return "nobody"
        if self.share < TOO_LOW_BELOW:
            return "too low"
        if self.share > TOO_HIGH_ABOVE:
            return "too high"
        low, high = GOOD_BAND
        return "good" if low <= self.share <= high else "acceptable"


def read_labels(path: Path) -> dict[str, bool]:
    with path.open(newline="") as handle:
        return {
            row["lead_id"]: row["converted"].strip() in ("1", "true", "True")
            for row in csv.DictReader(handle)
        }


def peak_scores(output_lines: Iterable[str]) -> dict[str, float]:
    """The highest score each lead reached, from score_changed events."""
    peaks: dict[str, float] = {}
    for line in output_lines:
        if not line.strip():
            continue
        event = json.loads(line)
        lead = event["lead_id"]
        peaks[lead] = max(peaks.get(lead, float("-inf")), float(event["score"]))
    return peaks


def sweep(
    peaks: dict[str, float], labels: dict[str, bool], thresholds: Sequence[float]
) -> list[Row]:
    conversions = sum(labels.values())
    rows = []
    for threshold in thresholds:
        reached = [lead for lead in labels if peaks.get(lead, 0.0) >= threshold]
        converted = sum(labels[lead] for lead in reached)
        rows.append(Row(threshold, len(reached), converted, len(labels), conversions))
    return rows


def default_thresholds(peaks: dict[str, float]) -> list[float]:
    """Multiples of 5 up to the score that 1% of the leads reach."""
    ranked = sorted(peaks.values(), reverse=True)
    if not ranked:
        return [5.0]
    top = ranked[len(ranked) // 100]
    return [5.0 * i for i in range(1, max(1, int(top // 5)) + 1)]


def recommend(rows: list[Row]) -> Row | None:
    """The most selective threshold in the good band, else the most selective
    one that is not too high or too low; None when every share is off."""
    measured = [row for row in rows if row.reached >= MIN_REACHED]
    for verdict in ("good", "acceptable"):
        fitting = [row for row in measured if row.verdict == verdict]
        if fitting:
            return max(fitting, key=lambda row: row.threshold)
    return None


def render(rows: list[Row], current: float | None) -> str:
    header = "threshold  reached  share_of_leads  converted  share_converted"
    lines = [header + "  recall  verdict"]
    for row in rows:
        mark = (
            "  <- configured"
            if current is not None and row.threshold == current
            else ""
        )
        lines.append(
            f"{row.threshold:9g}  {row.reached:7d}  {row.reached / row.leads:14.1%}"
            f"  {row.converted:9d}  {row.share:15.1%}  {row.recall:6.1%}"
            f"  {row.verdict}{mark}"
        )
    return "\n".join(lines)
