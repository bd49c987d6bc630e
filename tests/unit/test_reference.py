"""docs/configuration.md stays true to the config models."""

from pathlib import Path

from scorer import reference
from scorer.config import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_settings_table_is_the_one_the_models_make() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split(reference.TABLE_START + "\n", 1)[1]
    table = table.split(reference.TABLE_END, 1)[0]

    assert table == reference.render(), "run: python scripts/config-reference.py"


def test_every_field_is_listed_with_a_default_and_a_meaning() -> None:
    settings = {s.path: s for s in reference.fields()}

    assert settings["pipeline.batch_size"].default == "`1000`"
    assert settings["scoring.half_life"].default == "`14d`"
    assert settings["metrics.stall_after"].env == "SCORER_METRICS__STALL_AFTER"
    assert settings["kafka.settings"].env == "SCORER_RDKAFKA_<NAME>"
    assert settings["scoring.engagement_rules[].points"].env == "-"
    missing = [path for path, s in settings.items() if not s.description]
    assert missing == [], "give these a description or a reference.NOTES entry"
    assert set(reference.NOTES) <= set(settings), "NOTES name fields that left"


def test_every_top_level_section_appears() -> None:
    sections = {s.path.split(".")[0] for s in reference.fields()}

    assert sections == set(Config.model_fields)
