"""`scorer sandbox`: a local Kafka broker and redis-server to run the scorer on.

The demo and the tests start their servers and stop them when they end. A
user who wants to watch `scorer run` by hand needs servers that stay up:
this starts both on free loopback ports (their data in a temporary folder),
creates the topics a config names, prints the flags that point `scorer run`,
`scorer produce` and `scorer watch` at them, and stops both when asked to.
"""

import logging
import shlex
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from scorer.config import Config
from scorer.sandbox import LocalServer
from scorer.sandbox.kafka import KafkaBroker, create_topics
from scorer.sandbox.redis import RedisServer

log = logging.getLogger(__name__)

# Enough to see a consumer group share the work; the demo uses as many.
PARTITIONS = 3
# How often the sandbox checks that its servers still run.
WATCH_EVERY_S = 1.0


def create_config_topics(
    bootstrap_servers: str, config: Config, extra: Sequence[str] = ()
) -> list[str]:
    """Create every topic `config` names, the firmographics one compacted,
    and the `extra` ones.

    Returns their names, inputs first.
    """
    topics = config.topics
    names = [t.name for t in topics.events]
    compacted = []
    if topics.firmographics is not None:
        names.append(topics.firmographics.name)
        compacted.append(topics.firmographics.name)
    names += [topics.output.name, topics.dead_letter]
    names += [name for name in dict.fromkeys(extra) if name not in names]

    create_topics(bootstrap_servers, dict.fromkeys(names, PARTITIONS), compacted)
    return names


def start_servers(stack: ExitStack) -> tuple[KafkaBroker, RedisServer]:
    """A Kafka broker and a redis-server, stopped when `stack` closes.

    Redis first: it starts in milliseconds, and a missing redis-server is
    then reported before Kafka's seconds of start-up, not after.
    """
    redis_server = stack.enter_context(RedisServer())
    broker = stack.enter_context(KafkaBroker())
    return broker, redis_server


def serve(
    config: Config,
    stop: threading.Event,
    say: Callable[[str], None],
    config_path: Path | None = None,
    settings: Sequence[str] = (),
    extra_topics: Sequence[str] = (),
) -> list[str]:
    """Run both servers until `stop` is set; then stop them and drop their data.

    Returns the kinds of the servers that ended on their own meanwhile.

    `config_path`, the file `config` came from, and `settings`, the `--set`
    overrides it was read with, are repeated in the commands printed for the
    other terminal, so they use the same topics. `extra_topics` are created
    beside the config's (a side output topic for a seed, say).
    """
    say("Starting a local Kafka broker (KRaft) and redis-server ...")
    with ExitStack() as stack:
        broker, redis_server = start_servers(stack)
        names = create_config_topics(broker.bootstrap_servers, config, extra_topics)

        bootstrap, url = broker.bootstrap_servers, redis_server.url
        say(instructions(bootstrap, url, names, config_path, settings))
        lost = _watch(stop, [broker, redis_server], say)
        say("Stopping the servers; their data is deleted.")
    return lost


def _watch(
    stop: threading.Event, servers: list[LocalServer], say: Callable[[str], None]
) -> list[str]:
    """Wait for `stop`, saying at once when a server ends on its own.

    The others keep running until stopped (a user may be trying out an
    outage); the kinds of those that ended are returned.
    """
    lost: list[str] = []
    while not stop.wait(WATCH_EVERY_S):
        for server in servers:
            how = server.ended()
            if how is None or server.kind in lost:
                continue
            lost.append(server.kind)
            key, value = how.split("=", 1)  # exit_code=N or signal=NAME
            log.warning(
                f"%s ended on its own pid=%s {key}=%s", server.kind, server.pid, value
            )
            say(f"{server.kind} ended on its own ({how}); Ctrl-C stops the rest.")
    return lost


def program() -> str:
    """The command as the user typed it (`.venv/bin/scorer`, say), else `scorer`."""
    typed = sys.argv[0] if sys.argv else ""
    return typed if Path(typed).name == "scorer" else "scorer"


def instructions(
    bootstrap_servers: str,
    redis_url: str,
    topics: list[str],
    config_path: Path | None,
    settings: Sequence[str] = (),
) -> str:
    """What to run against the servers, with the config they were made for."""
    flags = f"--bootstrap-servers {bootstrap_servers}"
    for setting in reversed(settings):
        flags = f"--set {shlex.quote(setting)} {flags}"
    if config_path is not None:
        # Absolute: the other terminal may be in another directory.
        flags = f"--config {shlex.quote(str(config_path.absolute()))} {flags}"
    return "\n".join(
        [
            f"  Kafka  {bootstrap_servers}",
            f"  Redis  {redis_url}",
            f"  Topics {', '.join(topics)} ({PARTITIONS} partitions each)",
            "",
            "In another terminal:",
            f"  {program()} run {flags} --redis-url {redis_url}",
            f"  {program()} produce {flags} records.jsonl",
            f"  {program()} watch {flags} --from-beginning",
            "",
            "Ctrl-C (or SIGTERM) stops both servers.",
        ]
    )
