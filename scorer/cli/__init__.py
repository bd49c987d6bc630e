"""The `scorer` command line: `main`, the entry point of the `scorer` script.

The modules: `argument_parser` builds the parser, with the global flags
and the commands in the order help lists them; `options` holds the options
several commands share (--config, --set, the shorthand flags, --as-of) and
loads the config from them; `exit_codes` holds the codes and `UsageError`.
Each command's options and handler are in a module named after it:
`replay_command`, `produce_command`, `calibrate_command`, `demo_command`,
`config_commands` (check-config, default-config) and `live_commands` (run,
watch, state, sandbox); import-access-log's are in `scorer.accesslog`. The
_command suffix keeps a command's front apart from the scorer module of
the same name that does its work (`scorer.replay`, `scorer.calibrate`).

A handler imports the modules that need Kafka, Redis or the pipeline when
it runs, so that `scorer --help` stays quick.
"""

import os
import sys
from collections.abc import Sequence

from scorer import logs
from scorer.cli.argument_parser import arguments
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_USAGE, UsageError
from scorer.errors import ConfigError, ScorerError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
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
