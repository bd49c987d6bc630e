"""The regular expressions of rules, run by RE2: time linear in the text.

A rule's pattern comes from whoever edits the rules, and Python's `re`
backtracks: `(a+)+$` takes time that doubles with each character of a URL,
so one page view held the scorer (and, through the GIL, its health probes)
for minutes, and again after every restart, since its batch never commits.
RE2 does not backtrack, so no pattern can do that. Its syntax is Python's
but for lookaround and backreferences, which it refuses, and `\\b`, `\\w`
and `\\d`, which are ASCII only.
"""

from typing import Protocol

import re2


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


def compile_pattern(text: str) -> Pattern:
    """`text` compiled by RE2; ValueError says why RE2 refuses it."""
    options = re2.Options()
    # The config error tells the user; RE2's own log would only repeat it on
    # stderr, outside the log format.
    options.log_errors = False
    try:
        compiled: Pattern = re2.compile(text, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else b""
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        # RE2 says "missing ): <the pattern>": only the part before the
        # colon, since no config error quotes a value.
        kind = str(reason).partition(":")[0].strip() or "refused"
        raise ValueError(
            f"not a regular expression RE2 accepts: {kind} (no lookaround "
            "or backreferences)"
        ) from exc
    return compiled
