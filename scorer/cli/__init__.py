"""The `scorer` command line."""

import argparse
import functools
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from scorer import __version__, accesslog, logs
from scorer.cli import options
from scorer.cli.calibrate_command import add_calibrate
from scorer.cli.config_commands import add_check_config, add_default_config
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from scorer.cli.replay_command import add_replay
from scorer.errors import ConfigError, ScorerError
from scorer.events import TimeBounds

log = logging.getLogger(__name__)

# The levels `logging.level` accepts; the flag takes them in any case.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# The name the tests call, from when the command line was one module.
_overrides = options.overrides


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    # Until a config is read (see `options.load`), the flags or the defaults rule.
    logs.configure(args.log_level or "INFO", args.log_json)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        for detail in exc.details:
            print(f"config error: {detail}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ScorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`scorer replay ... | head`): not an error of
        # ours. Later writes, at exit too, go nowhere instead of failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        # A file named on the command line; other OS errors are not the
        # user's mistake and keep their traceback.
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorer", description="Real-time B2B lead scoring on Kafka and Redis."
    )
    parser.add_argument("--version", action="version", version=f"scorer {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (default: logging.level)",
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="one JSON object per log line (default: logging.format)",
    )

    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_run(commands)
    add_replay(commands)
    _add_produce(commands)
    _add_watch(commands)
    _add_state(commands)
    add_check_config(commands)
    add_default_config(commands)
    _add_import_access_log(commands)
    add_calibrate(commands)
    _add_demo(commands)
    _add_sandbox(commands)

    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
    return parser


def _add_run(commands: options.Subcommands) -> None:
    run = commands.add_parser("run", help="consume, score and publish until stopped")
    options.config_option(run)
    for flag in options.SHORTHANDS:
        options.shorthand(run, flag)
    run.set_defaults(handler=_run)


def _add_produce(commands: options.Subcommands) -> None:
    produce = commands.add_parser(
        "produce", help="produce JSON-lines records to Kafka, keyed by lead id"
    )
    options.config_option(produce)
    options.shorthand(produce, "--bootstrap-servers")
    produce.add_argument("--topic", help="the topic of records with no --route")
    produce.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="TYPE=TOPIC",
        help="records of this type go to this topic (repeatable)",
    )
    produce.add_argument(
        "--format",
        choices=("avro", "json"),
        help="wire format for every topic (default: the topic's in the config)",
    )
    produce.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="file, or - for stdin"
    )
    produce.set_defaults(handler=_produce)


def _add_watch(commands: options.Subcommands) -> None:
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


def _add_state(commands: options.Subcommands) -> None:
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


def _add_import_access_log(commands: options.Subcommands) -> None:
    importer = commands.add_parser(
        "import-access-log",
        help="turn a web access log into events (JSON lines)",
        description="Convert an Apache/Nginx combined-format access log, "
        "plain or gzip-compressed, to scorer events: JSON lines on stdout, "
        "counts on stderr.",
    )
    accesslog.add_arguments(importer)
    importer.set_defaults(handler=accesslog.run)


def _add_demo(commands: options.Subcommands) -> None:
    demo = commands.add_parser(
        "demo", help="start local Kafka and Redis and score real traffic live"
    )
    demo.add_argument(
        "--data",
        type=Path,
        help="folder of the public datasets (default: shared/data beside the "
        "checkout, if present)",
    )
    demo.add_argument(
        "--speed",
        type=_speed,
        help="replay the access log this many times faster than real time, "
        "a number above 0 (default: as fast as possible)",
    )
    demo.set_defaults(handler=_demo)


def _add_sandbox(commands: options.Subcommands) -> None:
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


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        # argparse would blame `scorer`; the command's usage is the helpful one.
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


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


def _produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from scorer import clients, produce
    from scorer.replay import read_lines

    config = options.load(args)
    routes = produce.parse_routes(args.route)
    if args.topic is not None:
        produce.checked_topic("--topic", args.topic)
    routing = produce.Routing.of(config, routes, args.topic, args.format)
    with clients.settings_checked_by_librdkafka(config.kafka):
        producer = Producer(
            clients.producer_settings(config), logger=clients.client_logger("producer")
        )
    bounds = TimeBounds(max_future_ms=config.pipeline.max_future)
    codecs = produce.codecs_for(config)
    sender = produce.Sender(producer, routing, codec_of=codecs, bounds=bounds)
    stats = sender.send(read_lines(args.inputs))
    print(stats.summary(), file=sys.stderr)
    return EXIT_OK if stats.succeeded else EXIT_FAILED


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(speed) and speed > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number above 0")
    return speed


def _demo(args: argparse.Namespace) -> int:
    from scorer import demo

    if args.data is not None:
        _check_data(args.data, demo.XEDU_CSV)
    # The demo's own convention: speed 0 replays as fast as possible.
    speed = args.speed if args.speed is not None else 0.0
    code: int = demo.main(data_dir=args.data, speed=speed)
    return code


def _check_data(folder: Path, dataset: Path) -> None:
    """A folder given with --data must hold the dataset; a default may not."""
    if not folder.is_dir():
        problem = "not a folder" if folder.exists() else "no such folder"
        raise UsageError(f"--data: {folder}: {problem}")
    if not (folder / dataset).is_file():
        raise UsageError(f"--data: {folder} holds no {dataset}")
