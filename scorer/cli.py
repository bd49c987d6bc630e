"""The `scorer` command line."""

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from scorer import __version__, logs
from scorer.config import Config, load_config
from scorer.errors import ConfigError, InvalidRecord, ScorerError
from scorer.events import parse_time

if TYPE_CHECKING:
    from scorer.replay import Replay

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_json)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        for detail in exc.details:
            print(f"config error: {detail}", file=sys.stderr)
        return EXIT_USAGE
    except ScorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorer", description="Real-time B2B lead scoring on Kafka and Redis."
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--log-level", default="INFO", help="default: INFO")
    parser.add_argument(
        "--log-json", action="store_true", help="one JSON object per log line"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="consume, score and publish until stopped")
    _config_option(run)
    run.set_defaults(handler=_run)

    replay = commands.add_parser(
        "replay", help="score JSON-lines files in-process; outputs to stdout"
    )
    _config_option(replay)
    replay.add_argument("--as-of", help="RFC 3339 time to evaluate the state at")
    replay.add_argument("--state-out", type=Path, help="write each lead's final state")
    replay.add_argument(
        "--dead-letter", type=Path, help="write unscorable lines here as JSON lines"
    )
    replay.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="file, or - for stdin"
    )
    replay.set_defaults(handler=_replay)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("config", type=Path, metavar="CONFIG")
    check.set_defaults(handler=_check_config)

    importer = commands.add_parser(
        "import-access-log", help="turn a web access log into events (JSON lines)"
    )
    importer.add_argument("args", nargs=argparse.REMAINDER)
    importer.set_defaults(handler=_import_access_log)

    calibrate = commands.add_parser(
        "calibrate", help="sweep MQL thresholds against known conversions"
    )
    _config_option(calibrate)
    calibrate.add_argument(
        "--outputs", type=Path, required=True, help="output events (JSON lines)"
    )
    calibrate.add_argument(
        "--labels", type=Path, required=True, help="CSV with lead_id,converted"
    )
    calibrate.set_defaults(handler=_calibrate)

    demo = commands.add_parser(
        "demo", help="start local Kafka and Redis and score real traffic live"
    )
    demo.add_argument(
        "--data",
        type=Path,
        help="folder of the public datasets (default: ../shared/data if present)",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="replay the access log this many times faster than real time "
        "(default 0: as fast as possible)",
    )
    demo.set_defaults(handler=_demo)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="YAML config (default: the packaged default)"
    )


def _load(path: Path | None) -> Config:
    return load_config(path)


def _run(args: argparse.Namespace) -> int:
    from scorer import service

    config = _load(args.config)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received signal=%s; finishing the batch in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service.run(config, stop)
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from scorer import replay

    config = _load(args.config)
    as_of_ms = _as_of(args.as_of)
    dead_letters = args.dead_letter.open("w") if args.dead_letter else None
    try:
        run = replay.Replay(config, as_of_ms, sys.stderr, dead_letters)
        stats = run.run(replay.read_lines(args.inputs), sys.stdout.buffer)
        sys.stdout.flush()
        if args.state_out is not None:
            _write_state(run, args.state_out)
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if dead_letters is not None:
            dead_letters.close()
    print(stats.summary(), file=sys.stderr)
    return EXIT_OK


def _write_state(run: "Replay", path: Path) -> None:
    from scorer.replay import snapshot_json

    with path.open("w") as handle:
        for snapshot in run.snapshots():
            handle.write(json.dumps(snapshot_json(snapshot)) + "\n")


def _as_of(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_time(text, "--as-of")
    except InvalidRecord as exc:
        raise ConfigError("--as-of", exc.message) from exc


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for detail in exc.details:
            print(f"{args.config}: {detail}", file=sys.stderr)
        return EXIT_FAILED

    scoring = config.scoring
    print(
        f"{args.config}: ok; rules {scoring.rules_version}: "
        f"{len(scoring.engagement_rules)} engagement and {len(scoring.fit_rules)} "
        f"fit rules, MQL at {scoring.mql.threshold:g} "
        f"(hysteresis {scoring.mql.hysteresis:g})"
    )
    return EXIT_OK


def _calibrate(args: argparse.Namespace) -> int:
    from scorer import calibrate

    threshold = _load(args.config).scoring.mql.threshold if args.config else None
    labels = calibrate.read_labels(args.labels)
    with args.outputs.open() as handle:
        peaks = calibrate.peak_scores(handle)
    thresholds = calibrate.default_thresholds(peaks)
    if threshold is not None and threshold not in thresholds:
        thresholds = sorted([*thresholds, threshold])
    rows = calibrate.sweep(peaks, labels, thresholds)
    print(calibrate.render(rows, threshold))
    best = calibrate.recommend(rows)
    if best is None:
        print("no threshold puts the converted share between 15% and 50%")
        return EXIT_OK
    print(
        f"suggested threshold: {best.threshold:g} ({best.verdict}: {best.share:.1%} "
        f"of the {best.reached} leads reaching it converted; "
        f"base rate {best.conversions / best.leads:.1%})"
    )
    return EXIT_OK


def _import_access_log(args: argparse.Namespace) -> int:
    from scorer import accesslog

    return accesslog.main(args.args)


def _demo(args: argparse.Namespace) -> int:
    from scorer import demo

    code: int = demo.main(data_dir=args.data, speed=args.speed)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
