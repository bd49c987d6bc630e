"""`scorer calibrate`: choose the MQL threshold from real conversions.

Marketing operations judge a threshold by the leads that reach it: when 25-40%
of them become sales-qualified it is right; below 15% it is too low (sales
drown in weak leads), above 50% too high (good leads wait). This reads the
scorer's output events and a labels file and prints, for a sweep of
thresholds, how many leads reached each and what share converted.
"""

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorer.errors import ScorerError

GOOD_BAND = (0.25, 0.40)
# check-config bounds points to 1e6 and weights to 1e3: a lead would need a
# million events at both limits, undecayed, to reach this. A larger number in
# an outputs file is garbage, and would stretch the sweep over nothing.
MAX_SCORE = 1e15
# A share measured on fewer leads than this is noise, not a verdict.
MIN_REACHED = 30
TOO_LOW_BELOW = 0.15
TOO_HIGH_ABOVE = 0.50
# The band assumes few leads convert at all. Where many do, a threshold that
# nearly everyone reaches can sit in it while telling sales nothing: its MQLs
# must convert at least this many times as often as the leads as a whole.
MIN_LIFT = 1.2

LABEL_COLUMNS = ("lead_id", "converted")
OUTPUT_TYPES = frozenset(("score_changed", "mql_crossed"))
CONVERTED_VALUES = {"1": True, "true": True, "0": False, "false": False}
# The default sweep steps by this many points, or by a multiple of it.
THRESHOLD_STEP = 5.0
# A sweep is read by a person, so it has at most this many rows; steps of 5
# up to a top score of 1e308 would also never finish being built.
MAX_THRESHOLDS = 100


class UnusableFile(ScorerError):
    """An outputs or labels file cannot be used; the message names file and line."""


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
    def lift(self) -> float:
        """How many times as often its MQLs convert as all the leads do.

        Printed with two decimals: with one, 1.17 showed as 1.2 beside the
        verdict that it is below MIN_LIFT.
        """
        base = self.conversions / self.leads if self.leads else 0.0
        return self.share / base if base else 0.0

    @property
    def verdict(self) -> str:
        if self.reached == 0:
            return "nobody"
        if self.reached < MIN_REACHED:
            return "too few"
        if self.share < TOO_LOW_BELOW:
            return "too low"
        if self.share > TOO_HIGH_ABOVE:
            return "too high"
        # Judged as printed (two decimals), so the table never contradicts itself.
        if round(self.lift, 2) < MIN_LIFT:
            return "not selective"
        low, high = GOOD_BAND
        return "good" if low <= self.share <= high else "acceptable"


def read_labels(path: Path) -> dict[str, bool]:
    """`lead_id,converted` rows; converted is 0, 1, true or false (any case)."""
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    try:
        _check_header(path, reader.fieldnames)
        labels: dict[str, bool] = {}
        lines: dict[str, int] = {}
        for row in reader:
            where = f"{path}:{reader.line_num}"
            lead, converted = _label(row, where)
            # Two rows of one lead may disagree: which one is true is unknown.
            if lead in labels:
                raise UnusableFile(
                    f"{where}: lead {lead} is labelled twice (first on line "
                    f"{lines[lead]})"
                )
            labels[lead] = converted
            lines[lead] = reader.line_num
    except csv.Error as exc:
        raise UnusableFile(f"{path}:{reader.line_num}: not CSV: {exc}") from exc

    if not labels:
        raise UnusableFile(f"{path}: no labels, only a header")
    return labels


@dataclass(slots=True)
class Outputs:
    """What calibration needs of a file of output events."""

    # The highest score each lead reached with `min_engagement` or more.
    peaks: dict[str, float] = field(default_factory=dict)
    leads: set[str] = field(default_factory=set)
    # Of the events that name theirs: peaks of other rules are not comparable.
    rules_versions: set[str] = field(default_factory=set)


def read_peaks(path: Path, min_engagement: float | None = None) -> dict[str, float]:
    """The highest score each lead reached, from the output events in `path`."""
    return read_outputs(path, min_engagement).peaks


def read_outputs(path: Path, min_engagement: float | None = None) -> Outputs:
    """The peaks, leads and rules versions of the outputs, in one reading.

    A lead becomes an MQL only with `min_engagement` (`mql.min_engagement`),
    so a score reached on fit alone does not count as reaching a threshold.
    """
    outputs = Outputs()
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                _add(outputs, line, f"{path}:{number}", min_engagement)
    return outputs


def _add(
    outputs: Outputs, line: bytes, where: str, min_engagement: float | None
) -> None:
    lead, score, engagement, rules_version = _scored(line, where)

    outputs.leads.add(lead)
    if rules_version is not None:
        outputs.rules_versions.add(rules_version)
    if min_engagement is None or engagement >= min_engagement:
        outputs.peaks[lead] = max(outputs.peaks.get(lead, float("-inf")), score)


def rules_warning(versions: set[str], configured: str) -> str | None:
    """Why the sweep may mislead when the outputs are not all of these rules.

    A threshold suits the rules whose scores reached it: peaks of rules
    since changed (other points, caps, half-lives) say little of the new.
    """
    if len(versions) > 1:
        listed = ", ".join(sorted(versions))
        return (
            f"the outputs come from {len(versions)} rules versions ({listed}); "
            "their peaks are compared as if scored alike"
        )
    if versions and configured not in versions:
        (version,) = versions
        return (
            f"the outputs were scored by rules {version}, the config's are "
            f"{configured}; the sweep says how the scores of {version} converted"
        )
    return None


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
    """Multiples of a step up to the score that 1% of the leads reach.

    The step is 5, or the smallest multiple of 5 that keeps the sweep to
    MAX_THRESHOLDS rows.
    """
    ranked = sorted(peaks.values(), reverse=True)
    if not ranked:
        return [THRESHOLD_STEP]
    top = ranked[len(ranked) // 100]
    steps_of_5 = math.ceil(top / (THRESHOLD_STEP * MAX_THRESHOLDS))
    step = THRESHOLD_STEP * max(1, steps_of_5)
    return [step * i for i in range(1, max(1, int(top // step)) + 1)]


def recommend(rows: list[Row]) -> Row | None:
    """The highest threshold in the good band, else the acceptable one whose
    share is nearest the band; None when no row is good or acceptable.

    Within the band every threshold is right, and the highest sends sales
    the fewest leads. Outside it, nearness to the band is what counts: the
    highest acceptable threshold would be the one closest to "too high".
    """
    good = [row for row in rows if row.verdict == "good"]
    if good:
        return max(good, key=lambda row: row.threshold)

    acceptable = [row for row in rows if row.verdict == "acceptable"]
    if not acceptable:
        return None
    return min(acceptable, key=lambda row: (_off_band(row.share), -row.threshold))


def why_recommended(best: Row, rows: list[Row]) -> str:
    """How `recommend` chose `best`, for the line that suggests it.

    It speaks of verdicts, not shares: a row can sit in the band and still
    not be good (too few leads, or not selective).
    """
    if best.verdict == "good":
        return "the highest threshold judged good"
    acceptable = sum(row.verdict == "acceptable" for row in rows)
    if acceptable == 1:
        return "none is judged good, and this is the only acceptable one"
    return (
        f"none is judged good; of the {acceptable} acceptable, the one whose "
        "share is nearest the good band"
    )


def _off_band(share: float) -> float:
    low, high = GOOD_BAND
    return max(low - share, share - high, 0.0)


def sweep_labelled(
    peaks: dict[str, float],
    labels: dict[str, bool],
    configured: float,
    hysteresis: float = 0.0,
) -> list[Row]:
    """The default thresholds and the configured one, over labelled leads
    only: a lead left out must not add rows either.

    A labelled lead with no output counts as reaching 0, as in the sweep. A
    threshold not above `hysteresis` is left out: no config can take it, so
    it must not be suggested.
    """
    labelled = _labelled_peaks(peaks, labels)
    thresholds = [t for t in default_thresholds(labelled) if t > hysteresis]
    if configured not in thresholds:
        thresholds = sorted([*thresholds, configured])
    return sweep(labelled, labels, thresholds)


def left_out(
    peaks: dict[str, float], labels: dict[str, bool], hysteresis: float
) -> list[float]:
    """The default thresholds `sweep_labelled` leaves out, for saying so."""
    labelled = _labelled_peaks(peaks, labels)
    return [t for t in default_thresholds(labelled) if t <= hysteresis]


def _labelled_peaks(
    peaks: dict[str, float], labels: dict[str, bool]
) -> dict[str, float]:
    return {lead: peaks.get(lead, 0.0) for lead in labels}


def closing_line(
    rows: list[Row], left_out: Sequence[float] = (), hysteresis: float = 0.0
) -> str:
    """The suggested threshold and why, or why there is none.

    Why there is none speaks of the rows shown: those `left_out`, not
    above the hysteresis, are said apart.
    """
    best = recommend(rows)
    if best is None:
        unswept = (
            f"; thresholds up to {left_out[-1]:g}, not above mql.hysteresis "
            f"({hysteresis:g}), are not swept"
            if left_out
            else ""
        )
        return no_recommendation(rows) + unswept

    base = best.conversions / best.leads
    return (
        f"suggested threshold: {best.threshold:g} ({best.verdict}: {best.share:.1%} "
        f"of the {best.reached:,} leads reaching it converted; base rate "
        f"{base:.1%}): {why_recommended(best, rows)}"
    )


def no_recommendation(rows: list[Row]) -> str:
    """Why no threshold is suggested: too few leads, no lift, or the band."""
    conversions, leads = rows[0].conversions, rows[0].leads
    if conversions in (0, leads):
        which = "none" if conversions == 0 else "all"
        return (
            f"no threshold is suggested: {which} of the {leads:,} labelled leads "
            "converted, so the labels cannot tell leads apart"
        )
    if all(row.verdict in ("nobody", "too few") for row in rows):
        return f"no threshold is reached by {MIN_REACHED} leads, too few to judge"
    if any(row.verdict == "not selective" for row in rows):
        return (
            "no threshold is suggested: those with a converted share in the "
            f"band convert less than {MIN_LIFT:g} times as often as all leads "
            "(not selective)"
        )
    return (
        f"no threshold reached by {MIN_REACHED} leads or more puts the converted "
        f"share between {TOO_LOW_BELOW:.0%} and {TOO_HIGH_ABOVE:.0%}"
    )


def render(rows: list[Row], current: float | None) -> str:
    header = "threshold  reached  share_of_leads  converted  share_converted"
    lines = [header + "   lift  recall  verdict"]
    for row in rows:
        mark = (
            "  <- configured"
            if current is not None and row.threshold == current
            else ""
        )
        lines.append(
            f"{row.threshold:9g}  {row.reached:7d}  {row.reached / row.leads:14.1%}"
            f"  {row.converted:9d}  {row.share:15.1%}  {row.lift:5.2f}"
            f"  {row.recall:6.1%}"
            f"  {row.verdict}{mark}"
        )
    return "\n".join(lines)


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UnusableFile(f"{path}:{line}: not UTF-8 text") from exc


def _check_header(path: Path, header: Sequence[str] | None) -> None:
    if header is None:
        raise UnusableFile(f"{path}: empty; expected a lead_id,converted header")
    missing = [name for name in LABEL_COLUMNS if name not in header]
    if missing:
        raise UnusableFile(
            f"{path}:1: no {' or '.join(missing)} column in the header "
            f"(expected lead_id,converted{_header_hint(header)})"
        )


def _header_hint(header: Sequence[str]) -> str:
    """What is wrong with a header that nearly names the columns.

    The header is not quoted: a file without one has a lead's row there.
    """
    cells = [cell.strip().lower() for cell in header]
    if all(name in cells for name in LABEL_COLUMNS):
        return "; the names are lower case, without spaces around them"
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        return "; the columns are separated by commas"
    return ""


def _label(row: dict[str, Any], where: str) -> tuple[str, bool]:
    lead, value = row["lead_id"], row["converted"]
    if not lead:
        raise UnusableFile(f"{where}: no lead_id")

    converted = CONVERTED_VALUES.get(value.strip().lower()) if value else None
    if converted is None:
        raise UnusableFile(
            f"{where}: converted is {_described(value)}; expected 0, 1, true or false"
        )
    return str(lead), converted


def _described(value: str | None) -> str:
    # Never quoted: a shifted column can put a person's name there, and a
    # short name looks like any other wrong value.
    if value is None:
        return "missing"
    if not value.strip():
        return "empty"
    return f"a value of {len(value)} character{'' if len(value) == 1 else 's'}"


def _scored(line: bytes, where: str) -> tuple[str, float, float, str | None]:
    try:
        event = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UnusableFile(f"{where}: not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise UnusableFile(f"{where}: not JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise UnusableFile(f"{where}: not JSON (nested too deep)") from exc
    except ValueError as exc:
        # Python's own limit on integer digits (4300), not a JSON rule.
        raise UnusableFile(f"{where}: not an output event (a number too long)") from exc

    if not isinstance(event, dict) or not isinstance(event.get("lead_id"), str):
        raise UnusableFile(f"{where}: not an output event (no lead_id)")
    if event.get("type") not in OUTPUT_TYPES:
        # A --state-out line has a lead and a score too, decayed to one
        # moment: read as outputs, it gives other peaks and another answer.
        raise UnusableFile(
            f"{where}: not an output event (no type score_changed or mql_crossed; "
            "give what replay writes on stdout, not its --state-out)"
        )
    score = _number(event.get("score"), "score", where)
    engagement = _number(event.get("engagement", 0.0), "engagement", where)
    version = event.get("rules_version")
    return (
        event["lead_id"],
        score,
        engagement,
        version if isinstance(version, str) else None,
    )


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnusableFile(f"{where}: not an output event (no numeric {name})")
    # Python's json reads NaN, Infinity and integers too large for a float,
    # which the scorer never writes; no threshold can be compared with them.
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise UnusableFile(
            f"{where}: not an output event ({name} is not a finite number)"
        )
    if abs(number) > MAX_SCORE:
        raise UnusableFile(
            f"{where}: not an output event ({name} {number:g} is beyond "
            f"{MAX_SCORE:g}, more than any config lets a lead earn)"
        )
    return number
