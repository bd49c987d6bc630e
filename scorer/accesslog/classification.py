"""How a line becomes an event, or why it does not.

A request from a bot, with a method or status that shows no reading, or
for a static file, is dropped with its reason; the rest is a download (by
its extension) or a page view, checked by the scorer's own validator.
"""

from collections.abc import Mapping
from urllib.parse import parse_qsl

from scorer.accesslog import bots, drop_reasons, file_types, ids
from scorer.accesslog.line_format import Request, parse_line
from scorer.accesslog.options import ImportOptions
from scorer.accesslog.reading import MAX_LINE_CHARS
from scorer.accesslog.urls import clean_referrer, without_email_addresses
from scorer.errors import InvalidRecord
from scorer.events import MAX_URL_CHARS, TimeBounds, format_time, parse_record

# An event as JSON-ready fields that `scorer.events.parse_record` accepts.
Event = dict[str, str]

# Feed URLs by convention: WordPress (?feed=rss2, /feed/), Blosxom
# (?flav=rss20) and the usual file names.
FEED_FLAVOURS = frozenset({"rss", "rss2", "rss20", "atom"})
FEED_FILE_NAMES = frozenset(
    {"feed", "rss", "atom", "rss.xml", "atom.xml", "feed.xml", "index.rss"}
)
FEED_EXTENSIONS = (".rss", ".atom")
FEED_CATEGORY = "feed"

_SUCCESS_STATUSES = range(200, 300)
_NOT_MODIFIED = 304
_PARTIAL_CONTENT = 206


def convert_line(
    line: str, options: ImportOptions, occurrences: ids.Occurrences
) -> Event | str:
    """The event `line` records, or the reason it records none."""
    if len(line) > MAX_LINE_CHARS:
        return drop_reasons.LINE_TOO_LONG
    if not line.strip():
        return drop_reasons.BLANK

    request = parse_line(line, options.bounds)
    if isinstance(request, str):
        return request

    reason = _rejection(request, options)
    if reason is not None:
        return reason

    occurrence = occurrences.count(line)
    event = _event(ids.event_id(options.salt, occurrence, line), request, options)
    if isinstance(event, str):
        return event
    return _validated(event, options.bounds)


def _rejection(request: Request, options: ImportOptions) -> str | None:
    agent = request.user_agent.lower()
    if bots.is_bot(agent):
        return drop_reasons.BOT
    if agent.strip() in ("", "-"):
        return drop_reasons.NO_USER_AGENT
    if request.method not in options.methods:
        return drop_reasons.METHOD
    return _status_rejection(request.status)


def _status_rejection(status: int) -> str | None:
    if status in _SUCCESS_STATUSES:
        return drop_reasons.PARTIAL_CONTENT if status == _PARTIAL_CONTENT else None
    if status == _NOT_MODIFIED:
        return None
    if 300 <= status < 400:
        return drop_reasons.REDIRECT
    if 400 <= status < 600:
        return drop_reasons.ERROR_STATUS
    return drop_reasons.OTHER_STATUS


def _event(event_id: str, request: Request, options: ImportOptions) -> Event | str:
    path = request.path
    lowered = path.lower()

    download_extension = file_types.download_extension(
        lowered, options.download_extensions
    )
    if download_extension is not None:
        event = _common(event_id, request, "content_download", options)
        event["asset_id"] = without_email_addresses(path)
        event["asset_type"] = options.asset_types.get(
            download_extension, options.default_asset_type
        )
        return event

    if _is_feed(lowered, request.query):
        if not options.keep_feeds:
            return drop_reasons.FEED
        return _page_view(event_id, request, FEED_CATEGORY, options)

    extension = file_types.extension(lowered)
    if extension in options.static_extensions:
        return drop_reasons.STATIC_ASSET
    if extension in options.other_file_extensions:
        return drop_reasons.OTHER_FILE
    category = _category(path, options.category_prefixes)
    return _page_view(event_id, request, category, options)


def _page_view(
    event_id: str, request: Request, category: str | None, options: ImportOptions
) -> Event:
    event = _common(event_id, request, "page_view", options)
    # Path parameters belong to their segment: an address there goes too.
    params = request.params if options.keep_url_query else ""
    url = without_email_addresses(request.path + params)
    if options.keep_url_query and request.query:
        url += f"?{request.query}"
    event["url"] = url
    if category is not None:
        event["category"] = category

    # The referrer is optional: one too long for the scorer is left out
    # rather than costing the page view.
    referrer = clean_referrer(request.referrer, options.keep_referrer_query)
    if referrer is not None and len(referrer) <= MAX_URL_CHARS:
        event["referrer"] = referrer
    return event


def _common(
    event_id: str, request: Request, kind: str, options: ImportOptions
) -> Event:
    visitor = request.client
    if options.by_user_agent:
        visitor = f"{request.client}\n{request.user_agent}"
    return {
        "event_id": event_id,
        "lead_id": ids.lead_id(options.salt, visitor),
        "type": kind,
        "occurred_at": format_time(request.occurred_at_ms),
    }


def _validated(event: Event, bounds: TimeBounds) -> Event | str:
    # The scorer's own validator decides, so the importer cannot drift from
    # it (URL length, time range); such lines are counted, not emitted.
    try:
        parse_record(event, bounds)
    except InvalidRecord as exc:
        return drop_reasons.invalid_record(exc)
    return event


def _is_feed(path: str, query: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    named_like_feed = name in FEED_FILE_NAMES or name.endswith(FEED_EXTENSIONS)

    params = parse_qsl(query, keep_blank_values=True)
    asks_for_feed = any(
        key == "feed" or (key == "flav" and value.lower() in FEED_FLAVOURS)
        for key, value in params
    )
    return named_like_feed or asks_for_feed


def _category(path: str, prefixes: Mapping[str, str]) -> str | None:
    matching = [prefix for prefix in prefixes if path.startswith(prefix)]
    if not matching:
        return None
    return prefixes[max(matching, key=len)]
