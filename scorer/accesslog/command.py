"""``scorer import-access-log``: its options, and a run from file to stdout."""

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from scorer.accesslog.classification import Event
from scorer.accesslog.options import ImportOptions
from scorer.accesslog.reading import decoded_lines, opened, uncompressed
from scorer.accesslog.stats import ImportStats, check_format

# The package's logger, not this module's: the import's log lines keep the
# name `scorer.accesslog` they had before the package was split.
logger = logging.getLogger(__package__)

# Where the salt is read from when --salt is not given: a command line shows
# in `ps` to every user of the machine, a process's environment does not.
SALT_VARIABLE = "SCORER_ACCESS_LOG_SALT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``scorer import-access-log``."""
    parser.add_argument(
        "file",
        metavar="FILE",
        help="access log path, or - for stdin; gzip-compressed or not",
    )
    parser.add_argument(
        "--salt",
        default="",
        help="secret key for hashing client addresses into lead ids; without "
        "one, the lead id of an IPv4 address can be reversed (default: the "
        f"environment variable {SALT_VARIABLE}, which ps does not show)",
    )
    parser.add_argument(
        "--by-user-agent",
        action="store_true",
        help="treat each address and user agent pair as its own visitor",
    )
    parser.add_argument(
        "--keep-feeds",
        action="store_true",
        help="emit feed fetches (RSS, Atom) as page views of category 'feed' "
        "instead of dropping them",
    )
    parser.add_argument(
        "--keep-url-query",
        action="store_true",
        help="keep the query string of page URLs (dropped by default: it can "
        "hold what a visitor typed into a form)",
    )


def run(args: argparse.Namespace) -> int:
    """Import `args.file`: events to stdout, counts to stderr.

    An unreadable file raises OSError, a compressed one that is not gzip or
    a damaged gzip `UnreadableLog`, and one with no line in the combined
    format `NotCombinedFormat`; the command line reports them.
    """
    options = ImportOptions(
        salt=args.salt or os.environ.get(SALT_VARIABLE, ""),
        by_user_agent=args.by_user_agent,
        keep_feeds=args.keep_feeds,
        keep_url_query=args.keep_url_query,
    )
    stats = ImportStats()
    name = "<stdin>" if args.file == "-" else args.file
    # From the package, where import_log reads OCCURRENCE_MEMORY_LINES; the
    # package imports this module, so not at the top.
    from scorer.accesslog import import_log

    with opened(args.file) as log:
        data = uncompressed(name, log)
        # Only once the file is known to be readable: an error is enough.
        if not options.salt:
            logger.warning(
                "no salt given: lead ids of real IP addresses are reversible"
            )
        logger.info("access log import started file=%s", args.file)
        events = import_log(decoded_lines(name, data), options, stats)
        _write_events(events, sys.stdout)

    logger.info(
        "access log import finished lines=%d events=%d",
        stats.lines_read,
        stats.events_emitted,
    )
    sys.stderr.write("\n".join(stats.summary()) + "\n")
    check_format(name, stats)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scorer.accesslog``: the same as ``scorer import-access-log``."""
    from scorer import cli

    args = sys.argv[1:] if argv is None else list(argv)
    return cli.main(["import-access-log", *args])


def _write_events(events: Iterable[Event], out: TextIO) -> None:
    for event in events:
        out.write(json.dumps(event) + "\n")
