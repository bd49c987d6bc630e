"""``scorer check-config`` and ``scorer default-config``.

check-config validates a file as the other commands would read it and, with
--against, lists what its scoring rules change from an older config's.
"""

import argparse
import sys
from pathlib import Path

from scorer.cli import options
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_OK
from scorer.config import Config, Scoring, default_config_path, load_config
from scorer.errors import ConfigError

# The field of a ConfigError about the file itself (scorer.config.loading).
FILE_PROBLEM = "(file)"
SHIPPED_EXAMPLE = (
    "(`scorer default-config` prints the shipped config, every section in "
    "use, to compare with)"
)


def add_check_config(commands: options.Subcommands) -> None:
    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("config", type=Path, metavar="CONFIG")
    check.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="KEY=VALUE",
        help="check the config with this field set, as the other commands "
        "would read it (repeatable)",
    )
    check.add_argument(
        "--against",
        type=Path,
        metavar="OLD",
        help="also list what the scoring rules change from config OLD's "
        "(settings by dotted path, rules by name; both read with the "
        "environment's overrides)",
    )
    check.set_defaults(handler=_check_config)


def add_default_config(commands: options.Subcommands) -> None:
    default = commands.add_parser(
        "default-config",
        help="print the packaged default config (YAML), to copy and edit",
    )
    default.set_defaults(handler=_default_config)


def _check_config(args: argparse.Namespace) -> int:
    config = _checked(args.config, options.overrides(args))
    old = _checked(args.against, {}) if args.against is not None else None
    old_refused = args.against is not None and old is None
    if config is None or old_refused:
        return EXIT_FAILED

    scoring = config.scoring
    print(
        f"{args.config}: ok; rules {scoring.rules_version}: "
        f"{len(scoring.engagement_rules)} engagement and {len(scoring.fit_rules)} "
        f"fit rules, MQL at {scoring.mql.threshold:g} "
        f"(hysteresis {scoring.mql.hysteresis:g}{_least(scoring.mql.min_engagement)})"
    )
    if old is not None:
        _print_changes(args.against, old.scoring, scoring)
    return EXIT_OK


def _default_config(args: argparse.Namespace) -> int:
    sys.stdout.write(default_config_path().read_text())
    return EXIT_OK


def _checked(path: Path, overrides: dict[str, str]) -> Config | None:
    """The config at `path`, or None once its errors are on stderr."""
    try:
        return load_config(path, overrides=overrides)
    except ConfigError as exc:
        for detail in exc.details:
            print(f"{path}: {detail}", file=sys.stderr)
        if exc.field != FILE_PROBLEM:
            # A field refused says what it must be, not what the others are.
            print(SHIPPED_EXAMPLE, file=sys.stderr)
        return None


def _print_changes(path: Path, old: Scoring, new: Scoring) -> None:
    from scorer.revision import changes

    lines = changes(old, new)
    if not lines and old.rules_version == new.rules_version:
        print(f"against {path}: the same scoring rules ({old.rules_version})")
        return
    if not lines:
        lines = ["no setting differs as shown here, but the rules versions do"]

    print(f"against {path} (rules {old.rules_version}):")
    for line in lines:
        print(f"  {line}")
    if old.version == new.version:
        print(
            f"  scoring.version is {new.version} in both: a new one names "
            "the new rules in every output (the digest differs either way)"
        )


def _least(min_engagement: float | None) -> str:
    return "" if min_engagement is None else f", min engagement {min_engagement:g}"
