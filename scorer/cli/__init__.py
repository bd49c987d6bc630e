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

import contextlib
import errno
import io
import os
import sys
from collections.abc import Sequence
from typing import Any

from scorer import logs
from scorer.cli.argument_parser import arguments
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_USAGE, UsageError
from scorer.errors import ConfigError, ScorerError

__all__ = ["main"]


# Errors of a write that no file name comes with: in this command line, a
# write to standard output (a full disk under `> out.jsonl`, /dev/full).
# EBADF: standard output opened for reading only (`1</dev/null`).
_WRITE_ERRORS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF)
)


def main(argv: Sequence[str] | None = None) -> int:
    if sys.stdout is None:
        # Started with standard output closed (`>&-`): Python leaves None,
        # and the first write would fail with an AttributeError.
        sys.stdout = _ClosedOutput()
    try:
        return _command(argv)
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
    except BrokenPipeError as exc:
        if exc.filename is not None:
            return _reported(exc)  # a named file's reader: --state-out to a FIFO
        # Standard output's reader went away (`scorer replay ... | head`):
        # not an error of ours.
        _drop_unwritten_output()
        return EXIT_FAILED
    except OSError as exc:
        return _reported(exc)
    except KeyboardInterrupt:
        return EXIT_FAILED


def _command(argv: Sequence[str] | None) -> int:
    """Parse the command line (help printed here too) and run its command."""
    args = arguments(argv)
    # Until a config is read (see `options.load`), the flags or the defaults rule.
    logs.configure(args.log_level or "INFO", args.log_json)
    code: int = args.handler(args)
    return code


def _reported(exc: OSError) -> int:
    """A file named on the command line, or the output, said in one line.

    Other OS errors are not the user's mistake and keep their traceback.
    """
    if exc.filename is None and exc.errno in _WRITE_ERRORS:
        print(f"error: cannot write the output: {exc.strerror}", file=sys.stderr)
        _drop_unwritten_output()
        return EXIT_FAILED
    if exc.filename is None:
        raise exc
    print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
    return EXIT_FAILED


def _drop_unwritten_output() -> None:
    """Later writes, at exit too, go nowhere instead of failing again."""
    # _ClosedOutput has no descriptor of its own, and nothing to flush.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _closed() -> OSError:
    return OSError(errno.EBADF, "closed before the command started", "standard output")


class _ClosedBytes(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise _closed()


class _ClosedOutput(io.TextIOBase):
    """Standard output that was closed before the command started."""

    buffer = _ClosedBytes()

    def write(self, text: str) -> int:
        raise _closed()
