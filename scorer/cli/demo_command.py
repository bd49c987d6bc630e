"""``scorer demo``: its options and their checks; the demo is `scorer.demo`."""

import argparse
import math
from pathlib import Path

from scorer.cli import options
from scorer.cli.exit_codes import UsageError


def add_demo(commands: options.Subcommands) -> None:
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
