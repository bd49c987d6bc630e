"""A config that validation refuses, to test the checks behind validation."""

import math

from scorer.config import Config


def with_infinite_demo_points(config: Config) -> Config:
    """`config` whose demo_request rule adds infinite points, uncapped.

    Built past validation (model_copy does not validate), as a config that
    slipped through it would be: one /demo visit makes the lead's score
    infinite, which a JSON output cannot hold.
    """
    rules = list(config.scoring.engagement_rules)
    demo = [rule.name for rule in rules].index("demo_request")
    rules[demo] = rules[demo].model_copy(update={"points": math.inf, "cap": None})
    scoring = config.scoring.model_copy(update={"engagement_rules": tuple(rules)})
    return config.model_copy(update={"scoring": scoring})
