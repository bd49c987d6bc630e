"""Log output: plain text for people, one JSON object per line for machines.

The scorer logs lifecycle at INFO and trouble at WARNING; it never logs per
event at INFO and never logs a lead's name or e-mail address, only lead ids.

Messages carry their facts as ``key=value`` words ("dead-lettered topic=t
partition=2 offset=17 reason=bad_json"). The JSON form keeps the message and
also lifts those words into fields of their own, as strings, so a log store
can filter on ``topic`` or ``lead_id`` without parsing. Fields passed in
``extra`` become JSON fields with their types, and are appended to the text
form as ``key=value``.
"""

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Attributes every LogRecord has; anything else was passed in `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_CORE_FIELDS = ("time", "level", "logger", "message", "error")
# A `key=value` word of a message; the value ends at white space, and a
# trailing ';', ',' or ':' belongs to the sentence, not to the value.
_FIELD = re.compile(r"(?<!\S)([a-z][a-z0-9_.]*)=(\S*[^\s;,:])")


class TextFormatter(logging.Formatter):
    """The plain format, with `extra` fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if not extras:
            return text
        words = " ".join(f"{name}={value}" for name, value in extras.items())
        head, newline, rest = text.partition("\n")
        return f"{head} {words}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        document: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for name, value in _FIELD.findall(message):
            if name not in _CORE_FIELDS:
                document.setdefault(name, value)
        for name, value in _extras(record).items():
            if name not in _CORE_FIELDS:
                document[name] = value
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure(
    level: str = "INFO", json_lines: bool = False, stream: IO[str] | None = None
) -> None:
    """Send every log record to `stream` (stderr), in text or JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter() if json_lines else TextFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _rfc3339(created_s: float) -> str:
    moment = datetime.fromtimestamp(created_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
