"""The options several commands share, and what they make of them.

--config, --set and the shorthand flags become the config (`load`);
--as-of becomes a time in milliseconds (`as_of`).
"""

import argparse
import os
import time
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

from scorer import logs
from scorer.cli.exit_codes import UsageError
from scorer.config import ENV_PREFIX, Config, load_config
from scorer.errors import ConfigError, InvalidRecord
from scorer.events import parse_time

# argparse has no public name for what add_subparsers returns.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Flags of `scorer run` that set one config field each (like --set).
SHORTHANDS = {
    "--bootstrap-servers": "kafka.bootstrap_servers",
    "--redis-url": "redis.url",
    "--metrics-port": "metrics.port",
}

AS_OF_EXAMPLE = "2026-11-05T00:00:00Z"
EARLIEST_AS_OF_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
LATEST_AS_OF_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def shorthand(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(flag, metavar="VALUE", help=f"sets {SHORTHANDS[flag]}")


def config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="YAML config (default: the packaged default)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="KEY=VALUE",
        help="set a config field by dotted path, value as YAML; overrides the "
        "file and the environment (repeatable)",
    )


def load(args: argparse.Namespace) -> Config:
    """The config: file < environment < flags; then logging as it says."""
    config = load_config(args.config, overrides=overrides(args))
    logs.configure(config.logging.level, config.logging.format == "json")
    return config


def overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f"{setting!r} is not KEY=VALUE")
        overrides[key.strip()] = value
    for flag, path in SHORTHANDS.items():
        value = getattr(args, _dest(flag), None)
        if value is not None:
            overrides[path] = value
    if args.log_level is not None:
        overrides["logging.level"] = args.log_level
    if args.log_json:
        overrides["logging.format"] = "json"
    return overrides


def rules_version_without_mql_overrides(args: argparse.Namespace) -> str | None:
    """The rules version of the config less the MQL settings of the command
    line and the environment; None when none is given, or the file is no
    valid config without them.

    The rules version covers `scoring.mql` too, so a threshold tried with
    `--set scoring.mql.threshold=...` names other rules than the ones that
    scored: `calibrate` and `state` compare this one instead.
    """
    given = overrides(args)
    kept = {key: value for key, value in given.items() if not _mql(key)}
    environ = {name: value for name, value in os.environ.items() if not _mql_env(name)}
    if kept.keys() == given.keys() and environ.keys() == os.environ.keys():
        return None
    try:
        unset = load_config(args.config, overrides=kept, environ=environ)
    except ConfigError:
        return None
    return unset.scoring.rules_version


def _mql(key: str) -> bool:
    return key.strip() == "scoring.mql" or key.strip().startswith("scoring.mql.")


def _mql_env(name: str) -> bool:
    return name.upper().startswith(f"{ENV_PREFIX}SCORING__MQL")


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def as_of(text: str | None) -> int | None:
    if text is None:
        return None
    if text.strip().lower() == "now":
        return time.time_ns() // 1_000_000
    try:
        as_of_ms = parse_time(text, "--as-of")
    except InvalidRecord as exc:
        problem = (
            "has no time zone"
            if _lacks_zone(text)
            else "is not an RFC 3339 time with a zone"
        )
        raise UsageError(f"--as-of: {text!r} {problem} (e.g. {AS_OF_EXAMPLE})") from exc

    # A time written with an offset can land past year 9999, or before year
    # 1, in UTC, which the state's `as_of` (written in UTC) cannot show.
    if as_of_ms > LATEST_AS_OF_MS:
        raise UsageError(f"--as-of: {text!r} is after 9999-12-31 in UTC")
    if as_of_ms < EARLIEST_AS_OF_MS:
        raise UsageError(f"--as-of: {text!r} is before 0001-01-01 in UTC")
    return as_of_ms


def _lacks_zone(text: str) -> bool:
    """Whether `text` is a date and time that only misses its zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False
    has_time = len(text) > 10 and text[10] in "Tt "
    return has_time and moment.tzinfo is None
