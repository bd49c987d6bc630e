"""The `scorer` command line."""

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from scorer import __version__, accesslog, logs
from scorer.cli import options
from scorer.cli.calibrate_command import add_calibrate
from scorer.cli.config_commands import add_check_config, add_default_config
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from scorer.cli.live_commands import add_run, add_sandbox, add_state, add_watch
from scorer.cli.replay_command import add_replay
from scorer.errors import ConfigError, ScorerError
from scorer.events import TimeBounds

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
    add_run(commands)
    add_replay(commands)
    _add_produce(commands)
    add_watch(commands)
    add_state(commands)
    add_check_config(commands)
    add_default_config(commands)
    _add_import_access_log(commands)
    add_calibrate(commands)
    _add_demo(commands)
    add_sandbox(commands)

    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
    return parser


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


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        # argparse would blame `scorer`; the command's usage is the helpful one.
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


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
