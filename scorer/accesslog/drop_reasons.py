"""Why a line of an access log became no event: one named constant a reason.

The code names a reason only through these constants, so a misspelt one is
an error at import or in mypy, not a new count in the summary.
"""

from scorer.errors import InvalidRecord

LINE_TOO_LONG = "line_too_long"
BLANK = "blank"
UNPARSEABLE = "unparseable"
COMMON_FORMAT = "common_format"
BAD_REQUEST = "bad_request"
BAD_TIME = "bad_time"
# What `scorer.events.TimeBounds` says of a time before 2000 or in the future.
TIME_OUT_OF_BOUNDS = "invalid_timestamp_out_of_range"
NO_CLIENT = "no_client"
BOT = "bot"
NO_USER_AGENT = "no_user_agent"
METHOD = "method"
PARTIAL_CONTENT = "partial_content"
REDIRECT = "redirect"
ERROR_STATUS = "error_status"
OTHER_STATUS = "other_status"
FEED = "feed"
STATIC_ASSET = "static_asset"
OTHER_FILE = "other_file"

# Drop reasons that say a line gave nothing to look at: not in the combined
# format, too long to read, naming no client (a proxy's forwarded list), or
# with a time in another format (nginx's $time_iso8601, milliseconds).
# When they are all an input gave, it is in some other format or written
# by a server set up in a way the importer cannot use.
FORMAT_REASONS = frozenset(
    {
        BLANK,
        LINE_TOO_LONG,
        UNPARSEABLE,
        COMMON_FORMAT,
        BAD_REQUEST,
        NO_CLIENT,
        BAD_TIME,
    }
)

# Why a line did not become an event, in the order the checks run; a line is
# counted under the first reason that applies. Records the scorer itself
# would refuse are counted as "invalid_<reason of InvalidRecord>"; of those,
# a time outside the scorer's bounds is checked right after "bad_time".
DROP_REASONS = (
    LINE_TOO_LONG,
    BLANK,
    UNPARSEABLE,
    COMMON_FORMAT,
    BAD_REQUEST,
    BAD_TIME,
    TIME_OUT_OF_BOUNDS,
    NO_CLIENT,
    BOT,
    NO_USER_AGENT,
    METHOD,
    PARTIAL_CONTENT,
    REDIRECT,
    ERROR_STATUS,
    OTHER_STATUS,
    FEED,
    STATIC_ASSET,
    OTHER_FILE,
)


def invalid_record(exc: InvalidRecord) -> str:
    """The drop reason of a record the scorer's own validator refuses."""
    return f"invalid_{exc.reason}"
