"""``scorer replay``: its options, the guards on its output files, its run.

The scoring itself is `scorer.replay`'s; this module is the command's front:
it refuses an output file that is an input, opens the outputs, and writes the
progress line and the final state.
"""

import argparse
import io
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING

from scorer.cli import options
from scorer.cli.exit_codes import EXIT_OK, UsageError
from scorer.config import default_config_path

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from scorer.progress import ProgressLine
    from scorer.replay import Replay


def add_replay(commands: options.Subcommands) -> None:
    replay = commands.add_parser(
        "replay", help="score JSON-lines files in-process; outputs to stdout"
    )
    options.config_option(replay)
    replay.add_argument(
        "--as-of",
        help="RFC 3339 time, or now, to evaluate the state at "
        "(default: the newest time of the input)",
    )
    replay.add_argument(
        "--state-out",
        type=_output_file,
        metavar="FILE",
        help="write each lead's final state to FILE (not -: stdout has the outputs)",
    )
    replay.add_argument(
        "--dead-letter",
        type=_output_file,
        metavar="FILE",
        help="write unscorable lines to FILE as JSON lines "
        "(not -: stdout has the outputs)",
    )
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    replay.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="file, or - for stdin"
    )
    replay.set_defaults(handler=_replay)


def _output_file(text: str) -> Path:
    """A file `replay` writes besides stdout: '-' is refused, not a file name.

    '-' reads stdin as an input, so as an output it would be taken for stdout,
    which already carries the output events.
    """
    if text == "-":
        raise argparse.ArgumentTypeError(
            "- is standard output, which carries the output events; name a file "
            "(./- for one named -)"
        )
    return Path(text)


def _replay(args: argparse.Namespace) -> int:
    from scorer import replay

    outputs = {"--dead-letter": args.dead_letter, "--state-out": args.state_out}
    _refuse_overwriting(_inputs(args), outputs)
    config = options.load(args)
    as_of_ms = options.as_of(args.as_of)

    started_s = time.monotonic()
    with ExitStack() as files:
        # Opened before any input is read, so a bad path fails at once.
        dead_letters = _open_output(files, args.dead_letter)
        state_out = _open_output(files, args.state_out)
        progress = _progress_line(args)
        if progress is not None:
            files.callback(progress.close)

        run = replay.Replay(config, as_of_ms, sys.stderr, dead_letters)
        stats = run.run(replay.read_lines(args.inputs), sys.stdout.buffer, progress)
        sys.stdout.flush()
        if state_out is not None:
            _write_state(run, state_out)

    elapsed_s = time.monotonic() - started_s
    print(stats.table(run.lead_count(), elapsed_s), file=sys.stderr)
    return EXIT_OK


def _inputs(args: argparse.Namespace) -> dict[Path | tuple[int, int], str]:
    """What replay reads, by file identity: its inputs and its config."""
    files = [Path(name) for name in args.inputs if name != "-"]
    inputs = {_identity(path): "an input" for path in files}
    if "-" in args.inputs:
        # stdin may be a file redirected in (`< in.jsonl`), or a pipe whose
        # writing end would block for ever: either way, not an output.
        stdin = os.fstat(sys.stdin.fileno())
        inputs[(stdin.st_dev, stdin.st_ino)] = "the standard input"
    # The packaged default too: in a checkout or an editable install it is a
    # file of the repository, and writing over it breaks every later run.
    config = args.config if args.config is not None else default_config_path()
    inputs[_identity(config)] = "the config"
    return inputs


def _refuse_overwriting(
    inputs: dict[Path | tuple[int, int], str], outputs: dict[str, Path | None]
) -> None:
    """Refuse an output that is an input or another output.

    Opening it for writing would empty it before it is read, or mix two
    outputs in one file.
    """
    taken = dict(inputs)
    for flag, path in outputs.items():
        if path is None:
            continue
        identity = _identity(path)
        if identity in taken:
            raise UsageError(
                f"{flag}: {path} is also {taken[identity]}; refusing to write over it"
            )
        taken[identity] = f"the {flag} file"


def _identity(path: Path) -> Path | tuple[int, int]:
    """The file `path` names: device and inode where it exists, so that a hard
    link to an input is caught too; else the resolved path."""
    try:
        status = path.stat()
    except OSError:
        return path.resolve()
    return (status.st_dev, status.st_ino)


def _open_output(files: ExitStack, path: Path | None) -> IO[str] | None:
    if path is None:
        return None
    named = io.BufferedWriter(_NamedFile(path, "w"))
    return files.enter_context(io.TextIOWrapper(named, encoding="utf-8"))


class _NamedFile(io.FileIO):
    """A file whose failed writes name it.

    The OSError of a write carries no file name, so a full disk under
    --state-out was told as `cannot write the output`, as if standard output
    had failed.
    """

    def write(self, data: "ReadableBuffer", /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.name)) from exc


def _progress_line(args: argparse.Namespace) -> "ProgressLine | None":
    from scorer.progress import ProgressLine

    shown = args.progress if args.progress is not None else sys.stderr.isatty()
    if not shown:
        return None
    files = [Path(name) for name in args.inputs if name != "-"]
    sized = len(files) == len(args.inputs) and all(f.is_file() for f in files)
    total = sum(f.stat().st_size for f in files) if sized else None
    return ProgressLine(sys.stderr, total)


def _write_state(run: "Replay", out: IO[str]) -> None:
    from scorer.replay import state_line

    for snapshot in run.snapshots():
        out.write(state_line(snapshot))
