"""Log output: plain text for people, one JSON object per line for machines.

The scorer logs lifecycle at INFO and trouble at WARNING; it never logs per
event at INFO and never logs a lead's name or e-mail address, only lead ids.

Messages carry their facts as ``key=value`` words ("dead-lettered topic=t
partition=2 offset=17 reason=bad_json"). The JSON form keeps the message and
also lifts those words into fields of their own, as strings, so a log store
can filter on ``topic`` or ``lead_id`` without parsing. Fields passed in
``extra`` become JSON fields with their types, and are appended to the text
form as ``key=value``.

Words are lifted from the message's format string, not from its text: a
value filled in for ``%s`` (a lead id, an HTTP request line) may itself hold
spaces and ``reason=...``, and must not become a field of its own.
"""

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import IO, Any

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A line of a kind repeated within this many seconds is counted, not logged.
REPEAT_WINDOW_S = 30.0

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
# A %-conversion of a format string, with its mapping key if it has one.
_CONVERSION = re.compile(
    r"%(?:\(([^)]*)\))?([#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d*))?[hlL]?[diouxXeEfFgGcrsa%])"
)
# The key of a `key=` word that a conversion completes.
_KEY_BEFORE = re.compile(r"(?<!\S)([a-z][a-z0-9_.]*)=\Z")
_WORD_END = re.compile(r"[\s;,:]|\Z")


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
        for name, value in _message_fields(record):
            if name not in _CORE_FIELDS:
                document.setdefault(name, value)
        for name, value in _extras(record).items():
            if name not in _CORE_FIELDS:
                document[name] = value
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class Repeats:
    """Lets `burst` lines of a kind through per `window_s` seconds, counts the rest.

    A flood of one kind of line (a broker refusing connections, a producer
    writing garbage) would bury everything else in the log. The first lines
    of a kind pass and open a window; the next ones within it are held back
    and counted, and the first one after it says how many were.
    """

    def __init__(
        self,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        burst: int = 1,
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self.burst = burst
        self._windows: dict[Hashable, tuple[float, int]] = {}  # opened, passed
        self._held: dict[Hashable, int] = {}

    def admit(self, kind: Hashable) -> str | None:
        """None to hold the line back, else a note to append to it ("" or
        how many lines of its kind were held back before it)."""
        now = self.clock()
        opened, passed = self._windows.get(kind, (-self.window_s, 0))
        if now - opened >= self.window_s:
            opened, passed = now, 0
        if passed >= self.burst:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None

        self._windows[kind] = (opened, passed + 1)
        held = self._held.pop(kind, 0)
        # No % in the note: the JSON log reads words from the format only.
        return f" ({held} more like it held back)" if held else ""


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


def _message_fields(record: logging.LogRecord) -> list[tuple[str, str]]:
    """The `key=value` words of a record's message, values filled in whole.

    Words written out in the format string are read from it; a `key=%s` word
    takes its argument, formatted, as its value, spaces and all. Text an
    argument brings along is never read for words.
    """
    template = str(record.msg)
    if not record.args:  # logging fills nothing in: the text is the message
        return _FIELD.findall(template)

    # A word that a conversion completes or cuts (`offset=%d-%d`) is not
    # written out: the marker keeps it out of the words read here.
    blanked = _CONVERSION.sub(_blank, template)
    words = [w for w in _FIELD.findall(blanked) if "\0" not in w[1]]
    try:
        return words + _filled_words(template, record.args)
    except Exception:
        # A log call must never raise for its fields (OverflowError of %c,
        # say); the message itself shows what went wrong.
        return words


def _blank(conversion: re.Match[str]) -> str:
    return "%" if conversion.group(2) == "%" else "\0"


def _filled_words(template: str, args: Any) -> list[tuple[str, str]]:
    words: list[tuple[str, str]] = []
    position = 0
    for match in _CONVERSION.finditer(template):
        name, spec = match.groups()
        if spec == "%":
            continue
        if "*" in spec:
            break  # a width taken from the arguments: too rare to read
        if name is not None:
            value = f"%{spec}" % (args[name],)
        else:
            value = f"%{spec}" % (args[position] if isinstance(args, tuple) else args,)
            position += 1

        key = _KEY_BEFORE.search(template, 0, match.start())
        if key is not None and _WORD_END.match(template, match.end()):
            words.append((key.group(1), value))
    return words


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _rfc3339(created_s: float) -> str:
    moment = datetime.fromtimestamp(created_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
