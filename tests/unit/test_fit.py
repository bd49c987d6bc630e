"""Fit scores from firmographic records, with the shipped default rules."""

from scorer.config import load_config
from scorer.events import Firmographics
from scorer.fit import FitModel

T0 = 1_750_000_000_000
FIT = FitModel(load_config(environ={}).scoring)


def test_a_record_that_matches_no_rule_has_a_float_fit() -> None:
    # An int 0 here reached the replay's state file as "fit": 0.
    fit = FIT.score(Firmographics("L1", T0, employees=3, title="Intern"))

    assert fit.rules == ()
    assert type(fit.points) is float and fit.points == 0.0


def test_matched_rules_add_their_points() -> None:
    fit = FIT.score(Firmographics("L1", T0, employees=900, title="Director of IT"))

    assert fit.rules == ("target_company_size", "senior_title")
    assert fit.points == 35.0
