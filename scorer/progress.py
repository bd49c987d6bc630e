"""A one-line progress report for long runs, redrawn in place on a terminal.

`scorer replay` draws it on stderr (stdout carries the outputs): a bar and
percentage when the input size is known (files), else a running count
(stdin), always with the rate and, for a bar, the time left.
"""

import time
from collections.abc import Callable
from typing import IO

BAR_WIDTH = 30
# Redrawing more often than this only costs time; a person sees no change.
REDRAW_EVERY_S = 0.2


class ProgressLine:
    """Counts records and bytes read; redraws at most every `REDRAW_EVERY_S`."""

    def __init__(
        self,
        stream: IO[str],
        total_bytes: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total_bytes = total_bytes
        self.clock = clock
        self.records = 0
        self.bytes_read = 0
        self._started_s = clock()
        self._drawn_s: float | None = None

    def advance(self, records: int, bytes_read: int) -> None:
        self.records += records
        self.bytes_read += bytes_read
        now = self.clock()
        if self._drawn_s is not None and now - self._drawn_s < REDRAW_EVERY_S:
            return
        self._drawn_s = now
        self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(self.clock())
        self.stream.write("\n")
        self.stream.flush()

    def render(self, now_s: float) -> str:
        elapsed_s = max(now_s - self._started_s, 1e-9)
        rate = self.records / elapsed_s
        counts = f"{self.records:,} records  {rate:,.0f}/s"
        if not self.total_bytes:
            return f"{counts}  {_clock(elapsed_s)}"

        done = min(self.bytes_read / self.total_bytes, 1.0)
        filled = round(done * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        left_s = elapsed_s * (1 - done) / done if done > 0 else None
        eta = _clock(left_s) if left_s is not None else "?"
        return f"[{bar}] {done:4.0%}  {counts}  left {eta}"

    def _draw(self, now_s: float) -> None:
        # \r returns to the line's start; \x1b[K clears what a longer line left.
        self.stream.write("\r" + self.render(now_s) + "\x1b[K")
        self.stream.flush()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
