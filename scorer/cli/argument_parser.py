"""The `scorer` argument parser: its global flags and its commands.

Each command's options are declared by its module; this one adds the
commands in the order `scorer --help` lists them.
"""

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

from scorer import __version__, accesslog
from scorer.cli import options
from scorer.cli.calibrate_command import add_calibrate
from scorer.cli.config_commands import add_check_config, add_default_config
from scorer.cli.demo_command import add_demo
from scorer.cli.live_commands import add_run, add_sandbox, add_state, add_watch
from scorer.cli.produce_command import add_produce
from scorer.cli.replay_command import add_replay

# The levels `logging.level` accepts; the flag takes them in any case.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that help it cannot write is an error.

    argparse drops the OSError of every message it writes, so `scorer --help >
    /dev/full` printed nothing and exited 0. The error now reaches `main`,
    which says it in one line. Help and --version go to standard output; a
    usage error, on standard error, is still written as argparse does: there
    is nowhere left to report its failure.
    """

    def _print_message(
        self, message: str, file: "SupportsWrite[str] | None" = None
    ) -> None:
        out: TextIO = sys.stdout
        if file is not out:
            super()._print_message(message, file)
            return
        out.write(message)
        out.flush()


def parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
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
    add_produce(commands)
    add_watch(commands)
    add_state(commands)
    add_check_config(commands)
    add_default_config(commands)
    _add_import_access_log(commands)
    add_calibrate(commands)
    add_demo(commands)
    add_sandbox(commands)

    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
    return parser


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


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    args, unknown = parser().parse_known_args(argv)
    if unknown:
        # argparse would blame `scorer`; the command's usage is the helpful one.
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args
