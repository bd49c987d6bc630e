"""Waits between attempts at something unavailable: doubling, then capped.

Redis, the brokers and the schema registry are all retried this way, so an
outage is met by a few quick tries and then a steady, quiet pace.
"""

from collections.abc import Iterator

# Redis and the brokers: back within 0.1 s of a blip, never more than 2 s late.
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 2.0


def delays(
    first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S
) -> Iterator[float]:
    """`first_s`, doubling up to `max_s`, for ever."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, max_s)
