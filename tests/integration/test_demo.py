"""The demo's live part: what a newcomer watches scroll by."""

import logging
import uuid

import pytest

from scorer import demo

LEADS = [f"visitor:order-{n}" for n in range(5)]


def _records() -> list[dict[str, str]]:
    """Per lead a trial download and a project page: 24 points, an MQL."""
    records = []
    for n, lead in enumerate(LEADS):
        moment = f"2015-05-17T13:0{n}:00.000Z"
        records.append(
            {
                "event_id": f"order-download-{n}",
                "lead_id": lead,
                "type": "content_download",
                "occurred_at": moment,
                "asset_id": "/files/tool.tar.gz",
                "asset_type": "software",
            }
        )
        records.append(
            {
                "event_id": f"order-page-{n}",
                "lead_id": lead,
                "type": "page_view",
                "occurred_at": moment,
                "url": "/projects/tool/",
            }
        )
    return records


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_alerts_are_shown_before_the_scorer_says_it_stopped(
    kafka_bootstrap: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The demo's printed lines and the scorer's log lines, in one order.
    lines: list[str] = []
    monkeypatch.setattr(demo, "say", lines.append)
    caplog.set_level(logging.INFO, logger="scorer.pipeline")
    handler = _Lines(lines)
    logging.getLogger("scorer.pipeline").addHandler(handler)
    name = f"order-{uuid.uuid4().hex[:6]}"
    config = demo._config(demo.ACCESS_RULES, kafka_bootstrap, redis_url, name)

    try:
        watch, _ = demo._stream(config, _records(), speed=0.0)
    finally:
        logging.getLogger("scorer.pipeline").removeHandler(handler)

    assert watch.mql_up == set(LEADS)
    alerts = [i for i, line in enumerate(lines) if "MQL ALERT" in line]
    assert len(alerts) == len(LEADS)
    assert max(alerts) < lines.index("scorer stopped")
