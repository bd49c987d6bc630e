"""``scorer calibrate``: its options and help, the labels check, its run.

The sweep and its verdicts are `scorer.calibrate`'s; this module is the
command's front: it says how many leads have no label, and keeps quiet about
a rules version that differs only by the MQL settings being tried.
"""

import argparse
import sys
from pathlib import Path

from scorer import calibrate as calibration
from scorer.cli import options
from scorer.cli.exit_codes import EXIT_FAILED, EXIT_OK


def _calibrate_description() -> str:
    """`scorer calibrate --help`: its columns and verdicts, from its constants."""
    low, high = (f"{share:.0%}" for share in calibration.GOOD_BAND)
    floor = f"{calibration.TOO_LOW_BELOW:.0%}"
    ceiling = f"{calibration.TOO_HIGH_ABOVE:.0%}"
    fewest, lift = calibration.MIN_REACHED, calibration.MIN_LIFT
    step, rows = calibration.THRESHOLD_STEP, calibration.MAX_THRESHOLDS
    return f"""\
Sweep MQL thresholds over output events (`scorer replay` or `scorer watch`)
against known outcomes, and judge each as marketing operations do.

Columns, for each threshold:
  reached          labelled leads whose score reached it at some output, with
                   at least mql.min_engagement of engagement
  share_of_leads   reached / all labelled leads
  converted        how many of those converted
  share_converted  converted / reached
  lift             share_converted / the share of all labelled leads that
                   converted
  recall           converted / all converted leads

Verdicts: good ({low}-{high} converted), acceptable (within {floor}-{ceiling}
but outside the good band), too low (under {floor}), too high (over {ceiling}),
not selective (within {floor}-{ceiling} but a lift under {lift:g}), too few
(reached by fewer than {fewest} leads: not judged), nobody.

Thresholds swept: multiples of {step:g} (or of a larger step, to keep at most
{rows} rows) up to the score the top 1% of the labelled leads reach, plus the config's
threshold. Suggested: the highest good threshold, else the acceptable one
nearest the good band; thresholds not above mql.hysteresis, which no config
can take, are left out. Leads in the outputs without a label are left out,
with a count on stderr; labelled leads without an output count as reaching
no threshold, with a count on stderr too.
"""


def add_calibrate(commands: options.Subcommands) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="sweep MQL thresholds against known conversions",
        description=_calibrate_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.config_option(calibrate)
    calibrate.add_argument(
        "--outputs", type=Path, required=True, help="output events (JSON lines)"
    )
    calibrate.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="CSV with lead_id,converted (0, 1, true or false)",
    )
    calibrate.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    scoring = options.load(args).scoring
    labels = calibration.read_labels(args.labels)
    outputs = calibration.read_outputs(args.outputs, scoring.mql.min_engagement)

    warning = _rules_warning(args, outputs.rules_versions, scoring.rules_version)
    if warning is not None:
        print(f"calibrate: warning: {warning}", file=sys.stderr)
    if not _labelled(args, outputs.leads, labels):
        return EXIT_FAILED

    threshold, hysteresis = scoring.mql.threshold, scoring.mql.hysteresis
    rows = calibration.sweep_labelled(outputs.peaks, labels, threshold, hysteresis)
    hidden = calibration.left_out(outputs.peaks, labels, hysteresis)
    print(calibration.render(rows, threshold))
    print(calibration.closing_line(rows, hidden, hysteresis))
    return EXIT_OK


def _labelled(
    args: argparse.Namespace, leads: set[str], labels: dict[str, bool]
) -> bool:
    """Whether any lead of the outputs has a label; says how many leads of
    either file are not in the other."""
    if not leads:
        print(f"calibrate: {args.outputs} holds no output events", file=sys.stderr)
        return False

    unlabelled = len(leads - labels.keys())
    if unlabelled == len(leads):
        # Every row would read "nobody": the files are of different data.
        print(
            f"calibrate: none of the {len(leads):,} leads in {args.outputs} is "
            f"in {args.labels} ({len(labels):,} leads); are they of the same data?",
            file=sys.stderr,
        )
        return False

    if unlabelled:
        print(
            f"calibrate: {unlabelled:,} of the {len(leads):,} leads in {args.outputs} "
            f"have no label in {args.labels} and are left out",
            file=sys.stderr,
        )
    _say_labels_without_outputs(args, leads, labels)
    return True


def _say_labels_without_outputs(
    args: argparse.Namespace, leads: set[str], labels: dict[str, bool]
) -> None:
    """Labelled leads with no output count as reaching no threshold.

    That is right for a lead no rule scored, and wrong for a label of other
    data (a CRM export wider than the event history), which lowers the base
    rate and raises every lift: the count lets the user tell which.
    """
    silent = labels.keys() - leads
    if not silent:
        return
    trimmed = {lead.strip() for lead in leads}
    spaced = sum(lead != lead.strip() and lead.strip() in trimmed for lead in silent)
    hint = (
        f"; {spaced:,} of them would match once spaces around the id are trimmed"
        if spaced
        else ""
    )
    print(
        f"calibrate: {len(silent):,} of the {len(labels):,} leads in {args.labels} "
        f"have no output in {args.outputs} and count as reaching no threshold "
        f"(leads no rule scored, or labels of other data){hint}",
        file=sys.stderr,
    )


def _rules_warning(
    args: argparse.Namespace, versions: set[str], configured: str
) -> str | None:
    """`calibration.rules_warning`, but quiet about the MQL settings alone.

    Trying a threshold with `--set scoring.mql.threshold=...` (or its
    environment variable) changes the rules version; the scores in the
    outputs are those of the file's rules all the same.
    """
    warning = calibration.rules_warning(versions, configured)
    if warning is None or len(versions) != 1:
        return warning
    unset = options.rules_version_without_mql_overrides(args)
    return None if unset is not None and unset in versions else warning
