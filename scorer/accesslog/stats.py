"""What an import read, emitted and dropped, and what that says of its input."""

from collections import Counter
from dataclasses import dataclass, field

from scorer.accesslog import drop_reasons
from scorer.accesslog.drop_reasons import FORMAT_REASONS
from scorer.errors import ScorerError


class NotCombinedFormat(ScorerError):
    """Lines were read and none of them was in the combined format."""


@dataclass(slots=True)
class ImportStats:
    """What one import read, emitted and dropped; filled while it runs."""

    lines_read: int = 0
    events: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    # The number of the first line dropped for each reason, to look at.
    first_dropped: dict[str, int] = field(default_factory=dict)
    leads: set[str] = field(default_factory=set)

    @property
    def events_emitted(self) -> int:
        return sum(self.events.values())

    @property
    def distinct_leads(self) -> int:
        return len(self.leads)

    def drop(self, line_number: int, reason: str) -> None:
        """Count a line that became no event."""
        self.dropped[reason] += 1
        self.first_dropped.setdefault(reason, line_number)

    def summary(self) -> list[str]:
        """Stable ``key=value`` lines of counts and line numbers, no content.

        A drop reason's line also gives the first line it dropped.
        """
        lines = [
            f"lines_read={self.lines_read}",
            f"events_emitted={self.events_emitted}",
        ]
        lines += [f"events.{kind}={n}" for kind, n in sorted(self.events.items())]
        lines.append(f"dropped={sum(self.dropped.values())}")
        lines += [
            f"dropped.{why}={n} first_line={self.first_dropped[why]}"
            for why, n in sorted(self.dropped.items())
        ]
        lines.append(f"distinct_leads={self.distinct_leads}")
        return lines


def check_format(name: str, stats: ImportStats) -> None:
    """Raise `NotCombinedFormat` if every line read was dropped for its format."""
    # Like `scorer produce` reading records but sending none: an input of
    # some other format should not pass for a quiet log.
    format_only = set(stats.dropped) <= FORMAT_REASONS
    if stats.lines_read == 0 or stats.events_emitted or not format_only:
        return
    counts = " ".join(f"{why}={n}" for why, n in sorted(stats.dropped.items()))
    what = "no line is in the combined format"
    if drop_reasons.BAD_TIME in stats.dropped:
        what = (
            "no line has a time as the combined format writes it "
            "([10/Oct/2000:13:55:36 -0700])"
        )
    if drop_reasons.NO_CLIENT in stats.dropped:
        what = (
            "no line is a combined-format request that names its client "
            "(behind a proxy, have the server log the client's address)"
        )
    raise NotCombinedFormat(f"{name}: {what} (lines_read={stats.lines_read} {counts})")
