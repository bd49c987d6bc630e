"""How a `scorer` command ends: its exit codes, and the error that means 2."""

from scorer.errors import ScorerError


class UsageError(ScorerError):
    """A flag's value cannot be used; the message starts with the flag."""


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
