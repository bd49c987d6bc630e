"""Java artifacts that Maven fetches once into a per-user cache.

The Kafka broker's jars and the Apicurio Registry's distribution are both
resolved from a packaged pom by `mvn dependency:...`. `fetch` stages the
download beside its final directory and renames it into place when
complete, so an interrupted one leaves no partial cache, and a file lock
keeps two processes from downloading at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scorer.errors import ScorerError
from scorer.sandbox import require_tool, run_to_end, tail

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "SCORER_CACHE_DIR"
JAVA_HINT = "install a Java 17+ runtime (Debian: openjdk-17-jre-headless)"
MVN_TIMEOUT_S = 900.0  # a first fetch is up to ~140 MB; allow a slow mirror

_POM_NAMESPACE = {"m": "http://maven.apache.org/POM/4.0.0"}
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # Maven colours some lines even with -B


@dataclass(frozen=True, slots=True)
class Artifact:
    """What to fetch: `goal` of the dependency plugin run on `pom`."""

    what: str  # for messages: "the Kafka jars"
    pom: Path
    goal: str  # dependency:copy-dependencies or dependency:unpack-dependencies
    mvn_hint: str
    complete: Callable[[Path], bool]  # does a fetched directory hold it all?


def default_cache_dir() -> Path:
    """Root of the cache: $SCORER_CACHE_DIR, else ~/.cache/lead-scorer."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "lead-scorer"


def pom_property(pom: Path, name: str) -> str:
    """A property of `pom`, such as the version it pins."""
    node = ET.parse(pom).find(f"m:properties/m:{name}", _POM_NAMESPACE)
    if node is None or not node.text:
        raise ScorerError(f"{pom} has no {name} property")
    return node.text.strip()


def fetch(artifact: Artifact, target: Path, version: str) -> Path:
    """Return `target`, fetching `artifact` into it on first use."""
    if target.is_dir():
        return target

    require_tool("java", JAVA_HINT)
    mvn = require_tool("mvn", artifact.mvn_hint)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / ".lock"):
        # Another process may have finished the download while we waited.
        if not target.is_dir():
            _download(mvn, artifact, target, version)
    return target


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to fetch jars lock=%s", path)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _download(mvn: str, artifact: Artifact, target: Path, version: str) -> None:
    # Holding the lock, any staging dir left here is from a killed download.
    prefix = f".{target.name}-"
    for stale in target.parent.glob(f"{prefix}*"):
        shutil.rmtree(stale, ignore_errors=True)

    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    logger.info("fetching %s version=%s into=%s", artifact.what, version, target)
    started = time.monotonic()
    try:
        _run_maven(mvn, artifact, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    staging.chmod(0o755)  # mkdtemp makes it private; the jars are not secret
    staging.rename(target)
    elapsed_s = time.monotonic() - started
    logger.info("fetched %s dir=%s elapsed_s=%.1f", artifact.what, target, elapsed_s)


def _run_maven(mvn: str, artifact: Artifact, output_dir: Path) -> None:
    # Maven runs on a copy of the pom: the installed package may be read-only.
    with tempfile.TemporaryDirectory(prefix="scorer-mvn-") as project:
        shutil.copy(artifact.pom, Path(project) / "pom.xml")
        command = [mvn, "-B", "-q", artifact.goal, f"-DoutputDirectory={output_dir}"]
        try:
            result = run_to_end(command, Path(project), MVN_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ScorerError(f"mvn did not finish in {MVN_TIMEOUT_S:.0f} s") from exc

    output = _ANSI_ESCAPE.sub("", result.stdout + result.stderr)
    if result.returncode != 0:
        raise ScorerError(
            f"mvn failed to fetch {artifact.what} (exit {result.returncode}):\n"
            f"{tail(output)}"
        )
    if not artifact.complete(output_dir):
        raise ScorerError(
            f"mvn succeeded but fetched no {artifact.what}:\n{tail(output)}"
        )
