"""The commands that work on live Kafka and Redis: run, watch, state, sandbox.

run, watch and sandbox last until SIGTERM or Ctrl-C, which end them cleanly;
state reads the scorer's Redis once.
"""

import argparse
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from scorer.cli import options
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from scorer.config import Config
    from scorer.state import Client

# The package's logger, not this module's: the signal's log line keeps the
# name `scorer.cli` it had before the package was split.
log = logging.getLogger(__package__)


def add_run(commands: options.Subcommands) -> None:
    run = commands.add_parser("run", help="consume, score and publish until stopped")
    options.config_option(run)
    for flag in options.SHORTHANDS:
        options.shorthand(run, flag)
    run.set_defaults(handler=_run)


def add_watch(commands: options.Subcommands) -> None:
    watch = commands.add_parser(
        "watch", help="print the output topic's events as JSON lines as they come"
    )
    options.config_option(watch)
    options.shorthand(watch, "--bootstrap-servers")
    watch.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest event on the topic (default: new ones only)",
    )
    watch.add_argument(
        "--mql-only", action="store_true", help="print mql_crossed events only"
    )
    watch.set_defaults(handler=_watch)


def add_state(commands: options.Subcommands) -> None:
    state = commands.add_parser(
        "state",
        help="print leads' scores as Redis holds them (JSON lines)",
        description="Read leads' state from the scorer's Redis (read only, "
        "safe while it runs) and print each as `replay --state-out` does, "
        "decayed to now: who is an MQL today, where the flag of the lead's "
        "newest event can be months old.",
    )
    options.config_option(state)
    options.shorthand(state, "--redis-url")
    state.add_argument(
        "--as-of",
        help="RFC 3339 time to decay the scores to (default: now; a time "
        "before a lead's newest event counts as that event's)",
    )
    state.add_argument(
        "--all", action="store_true", help="every lead held (a SCAN; no set order)"
    )
    state.add_argument(
        "--mql-only", action="store_true", help="print only the leads that are MQLs"
    )
    state.add_argument("leads", nargs="*", metavar="LEAD_ID")
    state.set_defaults(handler=_state)


def add_sandbox(commands: options.Subcommands) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help="start local Kafka and Redis with the config's topics for `scorer "
        "run`; Ctrl-C stops them",
        description="Start a Kafka broker (KRaft, on the JDK; its jars are fetched "
        "with mvn on first use, about 43 MB) and redis-server on free loopback "
        "ports, create the topics the config names, and print the `scorer run`, "
        "`scorer produce` and `scorer watch` commands that use them. Runs until "
        "Ctrl-C or SIGTERM, then stops both servers and deletes their data.",
    )
    options.config_option(sandbox)
    sandbox.add_argument(
        "--topic",
        action="append",
        default=[],
        dest="topics",
        metavar="NAME",
        help="also create this topic (repeatable), such as a side output topic "
        "to seed history into",
    )
    sandbox.set_defaults(handler=_sandbox)


def _run(args: argparse.Namespace) -> int:
    from scorer import service

    config = options.load(args)
    stop = _stop_on_signal("finishing the batch in flight")
    service.run(config, stop)
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    from scorer.watch import watch

    config = options.load(args)
    stop = _stop_on_signal("stopping")
    watch(config, stop, from_beginning=args.from_beginning, mql_only=args.mql_only)
    return EXIT_OK


def _sandbox(args: argparse.Namespace) -> int:
    from scorer.produce import checked_topic
    from scorer.sandbox import stack

    for name in args.topics:
        checked_topic("--topic", name)
    config = options.load(args)
    stop = _stop_on_signal("stopping the servers")
    lost = stack.serve(
        config,
        stop,
        _say,
        config_path=args.config,
        settings=args.settings,
        extra_topics=args.topics,
    )
    return EXIT_FAILED if lost else EXIT_OK


def _say(text: str) -> None:
    # Flushed at once: a user waits on these lines with stdout in a pipe.
    print(text, flush=True)


def _stop_on_signal(doing: str) -> threading.Event:
    """An event SIGTERM and SIGINT (Ctrl-C) set, so the command ends cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received signal=%s; %s", signum, doing)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def _state(args: argparse.Namespace) -> int:
    from scorer import lookup
    from scorer.clients import redis_client
    from scorer.lead import Params
    from scorer.state import RedisStore

    if bool(args.leads) == args.all:
        raise UsageError("give the lead ids to show, or --all")
    config = options.load(args)
    as_of_ms = options.as_of("now" if args.as_of is None else args.as_of)

    # Made at the first read: a cluster client connects as it is made, and its
    # failure is then the store's error, one line, not a traceback.
    client = functools.partial(redis_client, config)
    _warn_of_other_rules(
        client, config, options.rules_version_without_mql_overrides(args)
    )
    store = RedisStore(client, Params.of(config.scoring), config.redis.key_prefix)
    found = lookup.standings(store, args.leads or None, as_of_ms)
    written = lookup.write(found, sys.stdout, sys.stderr, args.mql_only)
    if args.all and not written.held:
        # Most often a key prefix other than the scorer's: say so, rather
        # than look like a store with no MQLs.
        prefix = config.redis.key_prefix
        print(f"no lead held under redis.key_prefix={prefix}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if written.missing else EXIT_OK


def _warn_of_other_rules(
    client: Callable[[], "Client"], config: "Config", without_mql: str | None
) -> None:
    """Say so when other rules than the config's wrote under its key prefix.

    The MQL settings of --set and the environment alone (`without_mql` is
    the version less them) are a question asked of the same scores, as in
    calibrate, not other rules.
    """
    from redis.exceptions import RedisClusterException, RedisError

    from scorer import presence

    prefix, version = config.redis.key_prefix, config.scoring.rules_version
    try:
        connection = client()
    except (RedisError, RedisClusterException):
        return  # reading the leads names the failure, in one line
    try:
        marked = presence.key_prefix_versions(connection, prefix, time.time())
    except (RedisError, RedisClusterException):
        return
    finally:
        connection.close()
    if without_mql is not None and without_mql in marked:
        return
    warning = presence.other_rules_warning(marked, prefix, version)
    if warning is not None:
        print(f"state: warning: {warning}", file=sys.stderr)
