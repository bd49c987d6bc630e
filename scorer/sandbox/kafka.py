"""A single-node Apache Kafka broker, run from jars that Maven fetches once.

`ensure_kafka_jars` resolves the broker's jars from the packaged pom.xml into a
per-user cache. `KafkaBroker` runs one KRaft node (broker and controller in
one JVM) on loopback ports, with settings that keep tests fast.
"""

from __future__ import annotations

import base64
import functools
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # stubs lack __all__
    AdminClient,
    NewTopic,
)

from scorer.errors import ScorerError
from scorer.sandbox import (
    LOOPBACK_HOST,
    LocalServer,
    free_ports,
    require_tool,
    run_to_end,
    tail,
)
from scorer.sandbox.maven import (
    JAVA_HINT,
    Artifact,
    default_cache_dir,
    fetch,
    pom_property,
)

logger = logging.getLogger(__name__)

POM_PATH = Path(__file__).with_name("pom.xml")
LOG4J_CONFIG_PATH = Path(__file__).with_name("log4j2.properties")
MVN_HINT = "install Maven (Debian: maven) to fetch the Kafka jars"

FORMAT_TIMEOUT_S = 120.0  # StorageTool is one short JVM run, ~1 s here
KAFKA_READY_TIMEOUT_S = 60.0  # the broker is ready in ~2-3 s on 2 cores
PROBE_TIMEOUT_S = 2.0  # one readiness or metadata request
TOPIC_TIMEOUT_S = 30.0  # creating or deleting a few topics
NODE_ID = 1  # the one KRaft node; its id is fixed so the quorum is static

# Modest heap: CI has 2 cores and 24 GiB and also runs Redis and the tests.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)

# Settings for one broker that tests start and stop often; anything not named
# here keeps Kafka's default.
SINGLE_NODE_PROPERTIES: Mapping[str, str] = {
    "num.partitions": "3",
    # Tests name every topic they use, so a typo fails instead of creating one.
    "auto.create.topics.enable": "false",
    # One broker cannot hold more than one replica of the internal topics.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # The default 50 partitions each makes the first group join take seconds.
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.num.partitions": "5",
    # Tests join groups one consumer at a time; waiting for more is wasted.
    "group.initial.rebalance.delay.ms": "0",
    # After a kill, the restarted controller refuses the node's new
    # registration until the old session expires (9 s by default).
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
}

KAFKA_JARS = Artifact(
    what="the Kafka jars",
    pom=POM_PATH,
    goal="dependency:copy-dependencies",
    mvn_hint=MVN_HINT,
    complete=lambda libs: any(libs.glob("kafka_*.jar")),
)


@functools.cache
def kafka_version() -> str:
    """The Kafka version pinned by the `kafka.version` property of pom.xml."""
    return pom_property(POM_PATH, "kafka.version")


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Return the directory of the broker's jars, fetching them on first use.

    The jars land in `<cache_dir>/kafka-<version>/libs` (see
    `scorer.sandbox.maven.fetch`); `cache_dir` defaults to the user's cache.
    """
    version = kafka_version()
    root = cache_dir or default_cache_dir()
    return fetch(KAFKA_JARS, root / f"kafka-{version}" / "libs", version)


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form: a UUID in unpadded URL-safe base64."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's own Uuid.randomUuid() skips ids starting with "-", which
        # command-line tools would read as an option.
        if not text.startswith("-"):
            return text


def admin_client(bootstrap_servers: str) -> AdminClient:
    """An AdminClient for `bootstrap_servers` that does not log idle closes."""
    return AdminClient(
        {"bootstrap.servers": bootstrap_servers, "log.connection.close": False}
    )


def create_topics(
    bootstrap_servers: str,
    partitions: Mapping[str, int],
    compacted: Collection[str] = frozenset(),
    replication_factor: int = 1,
) -> None:
    """Create topics (name -> partition count) and wait until each has a leader.

    Topics named in `compacted` get `cleanup.policy=compact`.
    """
    unknown = set(compacted) - set(partitions)
    if unknown:
        raise ScorerError(f"compacted names unknown topics: {sorted(unknown)}")

    admin = admin_client(bootstrap_servers)
    new_topics = [
        NewTopic(
            name,
            num_partitions=count,
            replication_factor=replication_factor,
            config={"cleanup.policy": "compact"} if name in compacted else {},
        )
        for name, count in partitions.items()
    ]
    futures = admin.create_topics(new_topics, operation_timeout=TOPIC_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise ScorerError(f"could not create topic={name}: {exc}") from exc

    _wait_for_leaders(admin, partitions)
    logger.info("created topics=%s", ",".join(partitions))


def delete_topics(bootstrap_servers: str, names: Collection[str]) -> None:
    """Delete topics; a topic that no longer exists is not an error."""
    if not names:
        return

    admin = admin_client(bootstrap_servers)
    futures = admin.delete_topics(list(names), operation_timeout=TOPIC_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if _is_unknown_topic(exc):
                continue
            raise ScorerError(f"could not delete topic={name}: {exc}") from exc
    logger.info("deleted topics=%s", ",".join(names))


def _is_unknown_topic(exc: KafkaException) -> bool:
    code = exc.args[0].code() if exc.args else None
    return bool(code == KafkaError.UNKNOWN_TOPIC_OR_PART)


def _wait_for_leaders(admin: AdminClient, partitions: Mapping[str, int]) -> None:
    # CreateTopics answers once the controller has committed the topics; the
    # broker learns their leaders a moment later.
    deadline = time.monotonic() + TOPIC_TIMEOUT_S
    while time.monotonic() < deadline:
        if _all_have_leaders(admin, partitions):
            return
        time.sleep(0.1)
    raise ScorerError(f"topics {sorted(partitions)} got no leaders in time")


def _all_have_leaders(admin: AdminClient, partitions: Mapping[str, int]) -> bool:
    topics = admin.list_topics(timeout=PROBE_TIMEOUT_S).topics
    for name, count in partitions.items():
        topic = topics.get(name)
        if topic is None or len(topic.partitions) != count:
            return False
        found = topic.partitions.values()
        if any(p.leader < 0 or p.error is not None for p in found):
            return False
    return True


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


class KafkaBroker(LocalServer):
    """One KRaft node (broker and controller) on loopback ports.

    `bootstrap_servers` is its PLAINTEXT listener. `extra_listeners` adds
    client listeners, listener name -> security protocol (for example
    ``{"SECURE": "SASL_SSL"}``), each on its own port (see `listener_port`);
    whatever they need, such as keystores, goes in `extra_properties`, which
    override every setting this class writes. `format_args` are added to the
    storage format command, for what KRaft only takes there, such as SCRAM
    users (``["--add-scram", "SCRAM-SHA-512=[name=u,password=p]"]``). The
    broker logs to `<work_dir>/server.log`.
    """

    kind = "kafka"

    def __init__(
        self,
        *,
        jars_dir: Path | None = None,
        work_dir: Path | None = None,
        extra_listeners: Mapping[str, str] | None = None,
        extra_properties: Mapping[str, str] | None = None,
        format_args: Sequence[str] = (),
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
        ready_timeout_s: float = KAFKA_READY_TIMEOUT_S,
    ) -> None:
        super().__init__(work_dir, ready_timeout_s)
        self.jars_dir = jars_dir
        self.extra_listeners = dict(extra_listeners or {})
        self.extra_properties = dict(extra_properties or {})
        self.format_args = list(format_args)
        self.jvm_options = list(jvm_options)
        self._ports: dict[str, int] = {}
        self._check_listener_names()

    @property
    def bootstrap_servers(self) -> str:
        """host:port of the PLAINTEXT listener."""
        return f"{LOOPBACK_HOST}:{self.listener_port('PLAINTEXT')}"

    def listener_port(self, name: str) -> int:
        """Port of the listener `name` (PLAINTEXT, CONTROLLER or an extra one)."""
        try:
            return self._ports[name]
        except KeyError:
            raise ScorerError(f"kafka has no port for listener={name}") from None

    def create_topics(
        self, partitions: Mapping[str, int], compacted: Collection[str] = frozenset()
    ) -> None:
        """Create topics on this broker; see the module's `create_topics`."""
        create_topics(self.bootstrap_servers, partitions, compacted)

    def _check_listener_names(self) -> None:
        reserved = {"PLAINTEXT", "CONTROLLER"} & set(self.extra_listeners)
        if reserved:
            raise ScorerError(f"extra_listeners may not redefine {sorted(reserved)}")

    def _configure(self) -> None:
        if self.jars_dir is None:
            self.jars_dir = ensure_kafka_jars()

        names = ["PLAINTEXT", "CONTROLLER", *self.extra_listeners]
        self._ports = dict(zip(names, free_ports(len(names)), strict=True))
        self._properties_path.write_text(_properties_text(self._properties()))
        self._format_storage()

    def _properties(self) -> dict[str, str]:
        client_protocols = {"PLAINTEXT": "PLAINTEXT", **self.extra_listeners}
        endpoints = [
            f"{name}://{LOOPBACK_HOST}:{self._ports[name]}" for name in client_protocols
        ]
        controller_port = self._ports["CONTROLLER"]
        protocols = {**client_protocols, "CONTROLLER": "PLAINTEXT"}
        return {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK_HOST}:{controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": ",".join(
                [*endpoints, f"CONTROLLER://{LOOPBACK_HOST}:{controller_port}"]
            ),
            "advertised.listeners": ",".join(endpoints),
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                f"{name}:{protocol}" for name, protocol in protocols.items()
            ),
            "log.dirs": str(self._data_dir),
            **SINGLE_NODE_PROPERTIES,
            **self.extra_properties,
        }

    def _format_storage(self) -> None:
        # A retry on fresh ports reuses the work dir; StorageTool refuses a
        # directory that is already formatted.
        shutil.rmtree(self._data_dir, ignore_errors=True)
        command = [
            require_tool("java", JAVA_HINT),
            "-Xmx256m",
            *self._logging_options(),
            "-cp",
            self._classpath(),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self._properties_path),
            *self.format_args,
        ]
        try:
            result = run_to_end(command, self.work_dir, FORMAT_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ScorerError("formatting Kafka storage timed out") from exc

        if result.returncode != 0:
            output = tail(result.stdout + result.stderr)
            raise ScorerError(f"formatting Kafka storage failed:\n{output}")

    def _command(self) -> list[str]:
        return [
            require_tool("java", JAVA_HINT),
            *self.jvm_options,
            *self._logging_options(),
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self._properties_path),
        ]

    def _is_ready(self) -> bool:
        # A plain connect first: librdkafka logs every refused connection.
        if not _accepts_connections(LOOPBACK_HOST, self.listener_port("PLAINTEXT")):
            return False
        try:
            metadata = admin_client(self.bootstrap_servers).list_topics(
                timeout=PROBE_TIMEOUT_S
            )
        except KafkaException:
            return False
        return NODE_ID in metadata.brokers

    def _address(self) -> str:
        return self.bootstrap_servers

    def _log_files(self) -> list[Path]:
        return [*super()._log_files(), self.work_dir / "server.log"]

    def _logging_options(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG_PATH}",
            f"-Dkafka.logs.dir={self.work_dir}",
        ]

    def _classpath(self) -> str:
        if self.jars_dir is None:
            raise ScorerError("kafka jars are not resolved yet")
        return f"{self.jars_dir}/*"

    @property
    def _properties_path(self) -> Path:
        return self.work_dir / "server.properties"

    @property
    def _data_dir(self) -> Path:
        return self.work_dir / "data"


def _properties_text(properties: Mapping[str, str]) -> str:
    # Java properties read a backslash as an escape.
    lines = [f"{key}={_escape_backslashes(value)}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def _escape_backslashes(value: str) -> str:
    return value.replace("\\", "\\\\")
