"""Turn a web server's access log into the scorer's activity events.

Reads the Apache/Nginx "combined" format, one request a line::

    host ident user [17/May/2015:10:05:03 +0000] "GET /path HTTP/1.1" 200 512
    "referrer" "user agent"

and yields `page_view` and `content_download` events as JSON-ready dicts that
`scorer.events.parse_record` accepts. Every line that does not become an event
is counted under one drop reason (see `DROP_REASONS`), so an operator can tell
a quiet log from a misread one.

Identity. A log knows nothing about a person, only the client address (and
the user agent). The lead id is ``visitor:`` plus 16 hex digits of an
HMAC-SHA256 of the address (optionally with the user agent), keyed with a
salt. The address itself never leaves this package. Without a salt the hash
of an IPv4 address can be reversed by trying all 2**32 of them, so pass one
for a real log; the user name field of the log is ignored entirely.

One visitor is one lead however the server wrote its address: an IPv6
address is written compressed in lower case without brackets or zone id
(``%eth0``), an IPv4-mapped one (``::ffff:192.0.2.71``) as its IPv4 address,
and a host name (HostnameLookups On) in lower case. A client field that is
none of these (``-``, ``unknown``, a comma list of proxies' addresses) gives
no lead and is counted as ``no_client``. Behind a reverse proxy every
visitor has the proxy's address; X-Forwarded-For is not read.

Known limitation: asset types are inferred from the file extension
(``.pdf`` and office documents become ``whitepaper``, ``.epub`` ``ebook``,
other downloads ``software``), not read from any catalogue, so they are a
guess about what the file is.

The modules: `reading` opens, decompresses and bounds the input;
`line_format` parses a line into a `Request`, with `clients` for the
client's one spelling and `urls` for the target and referrer;
`classification` makes a request an event or a reason from
`drop_reasons`, using `bots`, `file_types` and `ids`; `options` and
`stats` are what an import takes and counts; `command` is the
``scorer import-access-log`` front.

Decisions a reader may look for:

- The file's order is kept. Logs are written when a request finishes, so
  they are only roughly time-ordered; the scorer handles late events.
- 304 Not Modified counts like 200: the visitor asked for the page again and
  the browser showed its cached copy.
- 206 Partial Content is dropped: a PDF viewer fetches one file in many
  ranges (RFC 9110, section 15.3.7), and counting each would multiply one
  download; the full 200 or 304 response stands for the download.
- HEAD is dropped by default: it transfers no content and comes from link
  checkers, not readers. `ImportOptions.methods` changes that.
- A path whose last segment has a dot is a page unless its extension is a
  known static, download or other file type: ``/docs/v2.0``,
  ``/customers/example.com`` and ``/blog/asp.net-core`` are pages. A page
  named like a static file (``/blog/next.js``) stays a static asset: the
  log cannot tell it from the script of that name.
- A line cut short (for instance a user agent with no closing quote) is
  unparseable, whatever its prefix says: the missing rest could have held
  anything, so no part of it is trusted.
- Event ids are an HMAC of the line and of how many identical lines came
  before it in this input, not of its line number: importing the same
  requests again (the file twice, overlapping ``tail -n`` windows, rotated
  copies that overlap) yields the same ids and the scorer drops the
  repeats, while two identical lines in one input (two requests in one
  second) stay two events. Known limitations: the counts are kept for the
  last `OCCURRENCE_MEMORY_LINES` distinct lines; a line seen again after
  that many others starts from 0 again, so it gets its first copy's id and
  is dropped as a repeat. Counts start again with each input, so
  identical lines split across two imported files share an id.
- LF, CR LF and a lone CR each end a line, and a UTF-8 byte-order mark
  opening the input is ignored: logs pass through editors and converters.
- A gzip-compressed log (a rotated ``access.log.2.gz``) is read as its text,
  from a file or stdin alike; it is known by its first two bytes, not by its
  name, since stdin has none. bzip2, xz and zstd data are known the same way
  and refused with a message saying how to decompress them.
"""

import logging
from collections.abc import Iterable, Iterator

from scorer.accesslog import ids
from scorer.accesslog.bots import BOT_USER_AGENT_MARKERS
from scorer.accesslog.classification import (
    FEED_CATEGORY,
    FEED_EXTENSIONS,
    FEED_FILE_NAMES,
    FEED_FLAVOURS,
    Event,
    convert_line,
)
from scorer.accesslog.command import SALT_VARIABLE, add_arguments, main, run
from scorer.accesslog.drop_reasons import DROP_REASONS, FORMAT_REASONS
from scorer.accesslog.file_types import (
    DEFAULT_ASSET_TYPE,
    DEFAULT_ASSET_TYPES,
    DEFAULT_DOWNLOAD_EXTENSIONS,
    DEFAULT_OTHER_FILE_EXTENSIONS,
    DEFAULT_STATIC_EXTENSIONS,
)
from scorer.accesslog.ids import (
    EVENT_DIGEST_HEX_CHARS,
    EVENT_PREFIX,
    LEAD_DIGEST_HEX_CHARS,
    LEAD_PREFIX,
    OCCURRENCE_MEMORY_LINES,
)
from scorer.accesslog.options import DEFAULT_CATEGORY_PREFIXES, ImportOptions
from scorer.accesslog.reading import (
    BYTE_ORDER_MARK,
    GZIP_MAGIC,
    MAGIC_BYTES,
    MAX_LINE_CHARS,
    OTHER_COMPRESSIONS,
    UnreadableLog,
)
from scorer.accesslog.stats import ImportStats, NotCombinedFormat
from scorer.accesslog.urls import EMAIL_PLACEHOLDER

# The public names of the module this package was, still imported from here
# by the command line, the demo and the tests; the import itself is below.
__all__ = [
    "BOT_USER_AGENT_MARKERS",
    "BYTE_ORDER_MARK",
    "DEFAULT_ASSET_TYPE",
    "DEFAULT_ASSET_TYPES",
    "DEFAULT_CATEGORY_PREFIXES",
    "DEFAULT_DOWNLOAD_EXTENSIONS",
    "DEFAULT_OTHER_FILE_EXTENSIONS",
    "DEFAULT_STATIC_EXTENSIONS",
    "DROP_REASONS",
    "EMAIL_PLACEHOLDER",
    "EVENT_DIGEST_HEX_CHARS",
    "EVENT_PREFIX",
    "FEED_CATEGORY",
    "FEED_EXTENSIONS",
    "FEED_FILE_NAMES",
    "FEED_FLAVOURS",
    "FORMAT_REASONS",
    "GZIP_MAGIC",
    "LEAD_DIGEST_HEX_CHARS",
    "LEAD_PREFIX",
    "MAGIC_BYTES",
    "MAX_LINE_CHARS",
    "OCCURRENCE_MEMORY_LINES",
    "OTHER_COMPRESSIONS",
    "SALT_VARIABLE",
    "Event",
    "ImportOptions",
    "ImportStats",
    "NotCombinedFormat",
    "UnreadableLog",
    "add_arguments",
    "import_log",
    "main",
    "run",
]

logger = logging.getLogger(__name__)


def import_log(
    lines: Iterable[str],
    options: ImportOptions | None = None,
    stats: ImportStats | None = None,
) -> Iterator[Event]:
    """Yield one event per request worth scoring, in the file's order.

    Pass an `ImportStats` to learn what was dropped and why; it is updated
    as the events are consumed.
    """
    chosen = options if options is not None else ImportOptions()
    tally = stats if stats is not None else ImportStats()
    # Read from this package's namespace, where it is re-exported, so that
    # setting `scorer.accesslog.OCCURRENCE_MEMORY_LINES` still takes effect.
    occurrences = ids.Occurrences(OCCURRENCE_MEMORY_LINES)

    for line_number, raw in enumerate(lines, start=1):
        tally.lines_read += 1
        text = raw.rstrip("\r\n")
        if line_number == 1:
            text = text.removeprefix(BYTE_ORDER_MARK)
        outcome = convert_line(text, chosen, occurrences)
        if isinstance(outcome, str):
            tally.drop(line_number, outcome)
            logger.debug("line dropped line=%d reason=%s", line_number, outcome)
            continue

        tally.events[outcome["type"]] += 1
        tally.leads.add(outcome["lead_id"])
        yield outcome
