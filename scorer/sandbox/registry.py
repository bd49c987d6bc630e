"""Apicurio Registry, a schema registry with Confluent's API, on a loopback port.

`ensure_registry_dist` unpacks the registry's published distribution from
Maven Central into a per-user cache, as `ensure_kafka_jars` does for Kafka.
`SchemaRegistryServer` runs it with in-memory storage: every start begins
with no schemas, and nothing survives a restart.
"""

from __future__ import annotations

import functools
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from scorer.errors import ScorerError
from scorer.sandbox import (
    LOOPBACK_HOST,
    LocalServer,
    PortTakenError,
    free_ports,
    require_tool,
)
from scorer.sandbox.maven import (
    JAVA_HINT,
    Artifact,
    default_cache_dir,
    fetch,
    pom_property,
)

logger = logging.getLogger(__name__)

POM_PATH = Path(__file__).with_name("registry-pom.xml")
MVN_HINT = "install Maven (Debian: maven) to fetch Apicurio Registry"
CCOMPAT_PATH = "/apis/ccompat/v7"  # where Apicurio serves Confluent's API

REGISTRY_READY_TIMEOUT_S = 90.0  # ready in ~3 s here; a loaded 2-core CI is slower
PROBE_TIMEOUT_S = 1.0  # one readiness request

# Quarkus's words when its HTTP port is taken; it does not log the OS's text.
QUARKUS_PORT_TAKEN = "seems to be in use by another process"

DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms64m",
    "-Xmx384m",  # about 200 MB resident with a few schemas
    "-XX:+UseSerialGC",  # one small heap; G1's threads buy nothing here
    # The quick compiler only: starts ~1.5 s sooner, and tests ask little.
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)


REGISTRY_DIST = Artifact(
    what="Apicurio Registry",
    pom=POM_PATH,
    goal="dependency:unpack-dependencies",
    mvn_hint=MVN_HINT,
    complete=lambda dist: _runner_jar(dist) is not None,
)


@functools.cache
def registry_version() -> str:
    """The Apicurio Registry version pinned by `apicurio.version` in the pom."""
    return pom_property(POM_PATH, "apicurio.version")


def ensure_registry_dist(cache_dir: Path | None = None) -> Path:
    """Return the directory of the unpacked registry, fetching it on first use.

    It lands in `<cache_dir>/apicurio-registry-<version>/dist` (see
    `scorer.sandbox.maven.fetch`); `cache_dir` defaults to the user's cache.
    """
    version = registry_version()
    root = cache_dir or default_cache_dir()
    return fetch(REGISTRY_DIST, root / f"apicurio-registry-{version}" / "dist", version)


def _runner_jar(dist: Path) -> Path | None:
    return next(iter(sorted(dist.glob("*-runner.jar"))), None)


class SchemaRegistryServer(LocalServer):
    """Apicurio Registry on 127.0.0.1, in-memory, without authentication.

    `url` is the base of its Confluent-compatible API, what the scorer's
    `schema_registry.url` takes. `extra_properties` are Quarkus or Apicurio
    settings passed as `-D` options, after (so over) this class's own.
    """

    kind = "registry"

    def __init__(
        self,
        *,
        dist_dir: Path | None = None,
        work_dir: Path | None = None,
        extra_properties: dict[str, str] | None = None,
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
        ready_timeout_s: float = REGISTRY_READY_TIMEOUT_S,
    ) -> None:
        super().__init__(work_dir, ready_timeout_s)
        self.dist_dir = dist_dir
        self.extra_properties = dict(extra_properties or {})
        self.jvm_options = list(jvm_options)
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ScorerError("registry has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the Confluent-compatible API (no trailing slash)."""
        return f"http://{LOOPBACK_HOST}:{self.port}{CCOMPAT_PATH}"

    def _configure(self) -> None:
        if self.dist_dir is None:
            self.dist_dir = ensure_registry_dist()
        (self._port,) = free_ports(1)
        (self.work_dir / "tmp").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        if self.dist_dir is None or (jar := _runner_jar(self.dist_dir)) is None:
            raise ScorerError(f"no registry runner jar in {self.dist_dir}")
        properties = {
            "quarkus.http.host": LOOPBACK_HOST,
            "quarkus.http.port": str(self.port),
            "java.io.tmpdir": str(self.work_dir / "tmp"),
            **self.extra_properties,
        }
        return [
            require_tool("java", JAVA_HINT),
            *self.jvm_options,
            *(f"-D{name}={value}" for name, value in properties.items()),
            "-jar",
            str(jar),
        ]

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.url}/schemas/types", timeout=PROBE_TIMEOUT_S
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _address(self) -> str:
        return self.url

    def _exit_error(self, exit_code: int) -> ScorerError:
        error = super()._exit_error(exit_code)
        logged = "\n".join(self._read_since_launch(p) for p in self._log_files())
        if QUARKUS_PORT_TAKEN in logged:
            return PortTakenError(str(error))
        return error
