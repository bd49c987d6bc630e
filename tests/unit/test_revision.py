"""What a new rules version changes: `scorer check-config NEW --against OLD`."""

from pathlib import Path
from typing import Any

import yaml
from command import scorer as run

from scorer.config import Scoring, default_config_path, parse_config
from scorer.revision import changes


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(default_config_path().read_text())
    assert isinstance(raw, dict)
    return raw


def scoring_of(raw: dict[str, Any]) -> Scoring:
    return parse_config(raw).scoring


def test_the_same_rules_change_nothing() -> None:
    assert changes(scoring_of(default_raw()), scoring_of(default_raw())) == []


def test_settings_are_named_by_path_and_rules_by_name() -> None:
    raw = default_raw()
    rules = raw["scoring"]["engagement_rules"]
    raw["scoring"]["half_life"] = "20d"
    raw["scoring"]["mql"]["threshold"] = 55
    rules[0]["cap"] = {"points": 5, "window": "1d"}
    rules[1]["half_life"] = "3d"
    raw["scoring"]["fit_rules"][0]["range"]["min"] = 100

    assert changes(scoring_of(default_raw()), scoring_of(raw)) == [
        "scoring.half_life: 14d -> 20d",
        "scoring.mql.threshold: 60 -> 55",
        "scoring.engagement_rules[blog_read].cap.points: 3 -> 5",
        "scoring.engagement_rules[blog_read].cap.window: 7d -> 1d",
        "scoring.engagement_rules[demo_request].half_life: null -> 3d",
        "scoring.fit_rules[target_company_size].range.min: 200 -> 100",
    ]


def test_added_removed_and_reordered_rules_are_one_line_each() -> None:
    raw = default_raw()
    rules = raw["scoring"]["engagement_rules"]
    rules[2], rules[3] = rules[3], rules[2]
    del rules[4]
    rules.append(
        {
            "name": "contact",
            "match": {"type": "page_view", "url_contains": ["/contact"]},
            "points": 10,
        }
    )

    assert changes(scoring_of(default_raw()), scoring_of(raw)) == [
        "scoring.engagement_rules[contact]: added",
        "scoring.engagement_rules[proof_download]: removed",
        "scoring.engagement_rules order (the first match fires): blog_read, "
        "demo_request, pricing_page, careers_page, webinar_attended, "
        "webinar_registered -> blog_read, demo_request, careers_page, "
        "pricing_page, webinar_attended, webinar_registered",
    ]


def test_check_config_against_an_old_config_prints_the_changes(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(default_config_path().read_text())
    raw = default_raw()
    raw["scoring"]["mql"]["threshold"] = 55
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(raw))

    result = run("check-config", str(new), "--against", str(old))
    same = run("check-config", str(old), "--against", str(old))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        f"against {old} (rules {scoring_of(default_raw()).rules_version}):",
        "  scoring.mql.threshold: 60 -> 55",
        "  scoring.version is default-2026.12 in both: a new one names the new "
        "rules in every output (the digest differs either way)",
    ]
    assert same.stdout.splitlines()[1] == (
        f"against {old}: the same scoring rules "
        f"({scoring_of(default_raw()).rules_version})"
    )


def test_an_old_config_that_does_not_load_is_an_error_by_its_name(
    tmp_path: Path,
) -> None:
    absent = tmp_path / "absent.yaml"

    result = run("check-config", str(default_config_path()), "--against", str(absent))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{absent}: (file): cannot read {absent}")


def test_the_packaged_default_is_printed_to_start_a_config_from(
    tmp_path: Path,
) -> None:
    """A wheel user has no checkout to copy `scorer/default.yaml` from."""
    printed = run("default-config", module="scorer")
    mine = tmp_path / "rules.yaml"
    mine.write_text(printed.stdout)

    checked = run("check-config", str(mine), "--against", str(default_config_path()))

    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == default_config_path().read_text()
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[1].startswith(f"against {default_config_path()}")
    assert "the same scoring rules" in checked.stdout


def test_reordered_fit_rules_and_tiny_changes_are_shown() -> None:
    """Both change the rules version; "the same rules" would be false."""
    raw = default_raw()
    fit = raw["scoring"]["fit_rules"]
    fit[0], fit[1] = fit[1], fit[0]
    fit[2]["points"] = 20.000001

    assert changes(scoring_of(default_raw()), scoring_of(raw)) == [
        "scoring.fit_rules[senior_title].points: 20 -> 20.000001",
        "scoring.fit_rules order (as outputs list them): target_company_size, "
        "target_industry, senior_title -> target_industry, "
        "target_company_size, senior_title",
    ]


def test_removing_every_fit_rule_is_a_line_per_rule() -> None:
    raw = default_raw()
    raw["scoring"]["fit_rules"] = []

    assert changes(scoring_of(default_raw()), scoring_of(raw)) == [
        "scoring.fit_rules[senior_title]: removed",
        "scoring.fit_rules[target_company_size]: removed",
        "scoring.fit_rules[target_industry]: removed",
    ]
