"""The combined log format, one request a line, and its parsing::

    host ident user [17/May/2015:10:05:03 +0000] "GET /path HTTP/1.1" 200 512
    "referrer" "user agent"

A line that is not a request worth looking at gives its drop reason instead.
"""

import re
from dataclasses import dataclass

from scorer.accesslog import drop_reasons
from scorer.accesslog.clients import canonical_client
from scorer.accesslog.urls import origin_form, target_parts
from scorer.errors import InvalidRecord
from scorer.events import TimeBounds, format_time, parse_time

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
# Debian's vhost_combined format opens a line with the virtual host and port
# (``www.example.com:443``); it is read and ignored.
_VIRTUAL_HOST = r"(?:(?:\w[\w.-]*|\[[0-9A-Fa-f:.]+\])(?::\d+)? )?"
# Apache's common format: the combined format without referrer and agent.
_COMMON = (
    _VIRTUAL_HOST
    + r"(\S*(?:, \S+)*) \S+ \S+ \[([^\]]+)\] "
    + _QUOTED
    + r" (\d{3}) (?:\d+|-)"
)
_COMMON_LINE = re.compile(_COMMON)
# Fields after the user agent (some servers append more) are ignored.
_LINE = re.compile(_COMMON + " " + _QUOTED + " " + _QUOTED + r"(?:\s.*)?")
# No control character in the target: servers log them escaped (\x1b), so
# a raw one is a forged or damaged line, whose bytes would travel on in
# the event to whatever prints its URL.
_REQUEST = re.compile(r"([A-Z]+) ([^\s\x00-\x1f\x7f]+) HTTP/\d(?:\.\d)?")
_OTHER_FORM_METHODS = frozenset({"OPTIONS", "CONNECT"})
_TIME = re.compile(
    r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{4})"
)
# Month names are parsed here rather than with strptime's %b, which follows
# the process locale.
_MONTH_NAMES = "jan feb mar apr may jun jul aug sep oct nov dec"
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES.split(), 1)}


@dataclass(frozen=True, slots=True)
class Request:
    """What one line of the log says a visitor asked for."""

    client: str
    user_agent: str
    method: str
    # The request target's path, its parameters from the first ";" (they
    # carry session tokens such as jsessionid) and its query, apart.
    path: str
    params: str
    query: str
    status: int
    referrer: str | None
    occurred_at_ms: int


def parse_line(line: str, bounds: TimeBounds) -> Request | str:
    """The request `line` records, or the reason it records none."""
    fields = _LINE.fullmatch(line)
    if fields is None:
        # The user agent is needed to tell crawlers from readers.
        if _COMMON_LINE.fullmatch(line):
            return drop_reasons.COMMON_FORMAT
        return drop_reasons.UNPARSEABLE
    client_field, stamp, request_line, status, referrer, user_agent = fields.groups()

    method_and_target = _method_and_target(request_line)
    if isinstance(method_and_target, str):
        return method_and_target
    occurred_at_ms = _occurred_at_ms(stamp, bounds)
    if isinstance(occurred_at_ms, str):
        return occurred_at_ms
    client = canonical_client(client_field)
    if client is None:
        return drop_reasons.NO_CLIENT

    method, target = method_and_target
    path, params, query = target_parts(target)
    return Request(
        client=client,
        user_agent=user_agent,
        method=method,
        path=path,
        params=params,
        query=query,
        status=int(status),
        referrer=None if referrer in ("", "-") else referrer,
        occurred_at_ms=occurred_at_ms,
    )


def _method_and_target(request_line: str) -> tuple[str, str] | str:
    """The method and origin-form target of a request line, or a drop reason."""
    request = _REQUEST.fullmatch(request_line)
    if request is None:
        return drop_reasons.BAD_REQUEST
    method = request.group(1)
    target = origin_form(request.group(2))
    if target is not None:
        return method, target

    # RFC 9112, section 3.2: `OPTIONS *` and `CONNECT host:port` are
    # requests too (Apache's "internal dummy connection" among them),
    # just not for a page.
    if method in _OTHER_FORM_METHODS:
        return drop_reasons.METHOD
    return drop_reasons.BAD_REQUEST


def _occurred_at_ms(stamp: str, bounds: TimeBounds) -> int | str:
    """The time of a line in milliseconds, or a drop reason."""
    occurred_at_ms = _parse_time(stamp)
    if occurred_at_ms is None:
        return drop_reasons.BAD_TIME
    # Checked before the other filters, so the count covers every line of a
    # log older than the scorer takes, not only the lines worth an event.
    try:
        bounds.check("occurred_at", occurred_at_ms)
    except InvalidRecord as exc:
        return drop_reasons.invalid_record(exc)
    return occurred_at_ms


def _parse_time(stamp: str) -> int | None:
    parts = _TIME.fullmatch(stamp)
    if parts is None:
        return None
    day, month_name, year, hour, minute, second, sign, offset = parts.groups()
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None

    # Rewritten as RFC 3339 for the scorer's own parser, so that a log time
    # is read as the same time in a JSON event would be: ranges of date,
    # time and offset checked (day 31 of June, +0060 and +2400 refused), a
    # leap second kept as the last millisecond of its minute.
    date = f"{year}-{month:02d}-{day}"
    rfc3339 = f"{date}T{hour}:{minute}:{second}{sign}{offset[:2]}:{offset[2:]}"
    try:
        occurred_at_ms = parse_time(rfc3339, "occurred_at")
    except InvalidRecord:
        return None
    return occurred_at_ms if _writable(occurred_at_ms) else None


def _writable(occurred_at_ms: int) -> bool:
    # Once its offset is taken away, a time near the year 9999 (or 1) can
    # fall past it in UTC; datetime, and so the event's RFC 3339 text, holds
    # the years 1 to 9999 only, and the platform's fromtimestamp may refuse
    # a narrower range (OSError).
    try:
        format_time(occurred_at_ms)
    except (OverflowError, ValueError, OSError):
        return False
    return True
