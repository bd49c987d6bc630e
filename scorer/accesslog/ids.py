"""Lead and event ids: salted HMAC-SHA256 digests, never the address itself.

A lead id digests the client (and, if asked, its user agent); an event id
digests the line and how many identical lines came before it in the input,
so importing the same requests again gives the same ids.
"""

import hashlib
import hmac

LEAD_PREFIX = "visitor:"
EVENT_PREFIX = "accesslog:"
# 64 bits: collisions stay unlikely below about four billion visitors.
LEAD_DIGEST_HEX_CHARS = 16
EVENT_DIGEST_HEX_CHARS = 24

# How many distinct recent lines the occurrence counts of event ids are kept
# for, the oldest forgotten first: about 250 bytes each at the peak of a
# dict resize, so some 25 MB.
OCCURRENCE_MEMORY_LINES = 100_000


class Occurrences:
    """How many times each of the recent distinct lines was seen.

    Lines are remembered by a 64-bit digest, so memory stays bounded
    whatever their length: a dict of ints and a ring of the same ints in the
    order they were first seen, the oldest forgotten first (an OrderedDict
    of 16-byte strings took half as much again).
    """

    def __init__(self, capacity: int) -> None:
        self._counts: dict[int, int] = {}
        self._ring: list[int | None] = [None] * capacity
        self._next = 0

    def count(self, line: str) -> int:
        """How many identical lines came before `line`; `line` is counted."""
        digest = hashlib.blake2b(line.encode(errors="replace"), digest_size=8)
        key = int.from_bytes(digest.digest(), "little")
        before = self._counts.get(key, 0)
        if before == 0:
            self._remember(key)
        self._counts[key] = before + 1
        return before

    def _remember(self, key: int) -> None:
        oldest = self._ring[self._next]
        if oldest is not None:
            del self._counts[oldest]
        self._ring[self._next] = key
        self._next = (self._next + 1) % len(self._ring)


def lead_id(salt: str, visitor: str) -> str:
    """The lead id of `visitor`: its client, or client and user agent."""
    return LEAD_PREFIX + _digest(salt, visitor, LEAD_DIGEST_HEX_CHARS)


def event_id(salt: str, occurrence: int, line: str) -> str:
    """The id of the event of `line`, seen `occurrence` times before."""
    return EVENT_PREFIX + _digest(salt, f"{occurrence}\n{line}", EVENT_DIGEST_HEX_CHARS)


def _digest(salt: str, text: str, hex_chars: int) -> str:
    mac = hmac.new(salt.encode(), text.encode(errors="replace"), hashlib.sha256)
    return mac.hexdigest()[:hex_chars]
