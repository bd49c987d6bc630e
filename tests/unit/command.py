"""The `scorer` command line run as a user runs it: a child process."""

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# Generous: a run that hangs fails the test instead of the whole suite.
TIMEOUT_S = 120.0


def scorer(
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    module: str = "scorer.cli",
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m scorer.cli ARGS...`, its output captured as text.

    Bytes that are not UTF-8 come out as U+FFFD, so a test can still read
    the rest; `env` is added to this process's environment.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        errors="replace",
        input=stdin,
        check=False,
        timeout=TIMEOUT_S,
        env=None if env is None else {**os.environ, **env},
        cwd=cwd,
    )
