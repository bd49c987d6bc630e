"""`scorer state`: the leads Redis holds, as `scorer replay --state-out` shows them."""

import json
import time
from pathlib import Path

import pytest
import redis

from scorer.config import load_config
from scorer.events import TimeBounds, parse_record
from scorer.lead import Params
from scorer.sandbox import free_ports
from scorer.scoring import Scorer
from scorer.state import RedisStore
from tests.unit.command import scorer

PREFIX = "statecmd"
NEWEST = "2026-10-04T08:00:00Z"  # the newest time in RECORDS
LATER = "2026-11-20T00:00:00Z"
# Three leads: one MQL at its newest event that decay takes below the line
# by LATER, one that stays under it, one with a fit record only.
RECORDS = [
    {"type": "firmographics", "lead_id": "L-1", "company": "Acme",
     "employees": 100, "industry": "Software", "title": "VP of Sales",
     "country": "DE", "updated_at": "2026-10-01T08:00:00Z"},
    {"type": "page_view", "event_id": "e1", "lead_id": "L-1",
     "occurred_at": "2026-10-02T09:00:00Z", "url": "/pricing"},
    {"type": "page_view", "event_id": "e2", "lead_id": "L-1",
     "occurred_at": "2026-10-02T09:05:00Z", "url": "/demo"},
    {"type": "page_view", "event_id": "e3", "lead_id": "L-2",
     "occurred_at": "2026-10-03T10:00:00Z", "url": "/blog/a"},
    {"type": "firmographics", "lead_id": "L-3", "company": "Beta",
     "employees": 40, "industry": "Retail", "title": "Intern",
     "country": "FR", "updated_at": "2026-10-04T08:00:00Z"},
]  # fmt: skip
LEADS = ["L-1", "L-2", "L-3"]


@pytest.fixture
def history(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> Path:
    """RECORDS scored into Redis as the live scorer scores them; their file."""
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))

    scoring = load_config(environ={}).scoring
    store = RedisStore(redis_client, Params.of(scoring), key_prefix=PREFIX)
    items = [parse_record(r, TimeBounds()) for r in RECORDS]
    Scorer(scoring, store).score(items)
    return path


def replayed(history: Path, *as_of: str) -> list[dict[str, object]]:
    out = history.with_name("state.jsonl")
    done = scorer("replay", "--state-out", str(out), *as_of, str(history))
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda s: s["lead_id"])


def shown(redis_url: str, *args: str) -> tuple[int, list[dict[str, object]], str]:
    done = scorer(
        "state", "--redis-url", redis_url, "--set", f"redis.key_prefix={PREFIX}", *args
    )
    states = sorted(
        (json.loads(line) for line in done.stdout.splitlines()),
        key=lambda s: s["lead_id"],
    )
    return done.returncode, states, done.stderr


@pytest.mark.parametrize(("as_of", "mqls"), [(NEWEST, [True]), (LATER, [False])])
def test_redis_state_is_what_replay_gives(
    history: Path, redis_url: str, as_of: str, mqls: list[bool]
) -> None:
    expected = replayed(history, "--as-of", as_of)

    code, states, errors = shown(redis_url, "--as-of", as_of, *LEADS)

    assert (code, errors) == (0, "")
    assert states == expected
    assert [s["is_mql"] for s in expected] == [*mqls, False, False]


def test_without_as_of_the_scores_are_decayed_to_now(
    history: Path, redis_url: str
) -> None:
    code, states, _ = shown(redis_url, "L-1")

    (state,) = states
    assert code == 0 and state["is_mql"] is False  # two months of decay
    assert str(state["as_of"]) > "2026-12"


def test_all_and_mql_only_list_the_mqls(history: Path, redis_url: str) -> None:
    everyone = replayed(history, "--as-of", NEWEST)

    code, states, _ = shown(redis_url, "--all", "--as-of", NEWEST)
    assert code == 0 and states == everyone

    code, mqls, _ = shown(redis_url, "--all", "--mql-only", "--as-of", NEWEST)
    assert code == 0 and [s["lead_id"] for s in mqls] == ["L-1"]

    # Decayed to a later time, the lead has fallen below the line.
    code, mqls, _ = shown(redis_url, "--all", "--mql-only", "--as-of", LATER)
    assert code == 0 and mqls == []


def test_a_lead_redis_does_not_hold_is_named_and_fails(
    history: Path, redis_url: str
) -> None:
    code, states, errors = shown(redis_url, "L-1", "L-404")

    assert code == 1
    assert [s["lead_id"] for s in states] == ["L-1"]
    assert errors == (
        "L-404: no state (never scored, erased, or under another redis.key_prefix)\n"
    )


def test_all_under_another_prefix_is_no_lead_and_fails(
    history: Path, redis_url: str
) -> None:
    done = scorer(
        "state", "--redis-url", redis_url, "--set", "redis.key_prefix=other", "--all"
    )

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "no lead held under redis.key_prefix=other\n"


def test_lines_are_byte_equal_to_replay_s_for_any_lead_id(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    lead = {**RECORDS[1], "lead_id": 'ünï "cöde"'}
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(lead) + "\n")
    scoring = load_config(environ={}).scoring
    store = RedisStore(redis_client, Params.of(scoring), key_prefix=PREFIX)
    Scorer(scoring, store).score([parse_record(lead, TimeBounds())])
    out = tmp_path / "state.jsonl"
    replayed = scorer("replay", "--as-of", NEWEST, "--state-out", str(out), str(path))
    assert replayed.returncode == 0

    done = scorer(
        "state", "--redis-url", redis_url, "--set", f"redis.key_prefix={PREFIX}",
        "--as-of", NEWEST, "--", lead["lead_id"],
    )  # fmt: skip

    assert done.stdout == out.read_text()


@pytest.mark.parametrize(
    ("as_of", "problem"),
    [
        ("9999-12-31T23:59:59-23:59", "is after 9999-12-31 in UTC"),
        ("0001-01-01T00:00:00+01:00", "is before 0001-01-01 in UTC"),
        ("", "is not an RFC 3339 time with a zone"),
    ],
)
def test_an_unusable_as_of_is_a_usage_error(as_of: str, problem: str) -> None:
    for args in (("state", "--as-of", as_of, "L-1"), ("replay", "--as-of", as_of, "-")):
        done = scorer(*args, stdin="")

        assert done.returncode == 2, args
        assert done.stderr.startswith(f"error: --as-of: {as_of!r} {problem}"), args


@pytest.mark.parametrize("cluster", ["false", "true"])
def test_an_unreachable_redis_is_one_error_line(cluster: str) -> None:
    (port,) = free_ports(1)  # nothing listens there
    url = f"redis://127.0.0.1:{port}/0"
    for leads in (["L-1"], ["--all"]):
        done = scorer(
            "state", "--redis-url", url, "--set", f"redis.cluster={cluster}", *leads
        )

        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: cannot "), done.stderr
        assert "Traceback" not in done.stderr


def test_leads_or_all_must_be_given() -> None:
    done = scorer("state", "--redis-url", "redis://127.0.0.1:1/0")

    assert done.returncode == 2
    assert "give the lead ids to show, or --all" in done.stderr


def test_leads_scored_by_other_rules_are_warned_of(
    history: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    # What a running scorer of other rules marks beside its leads; a
    # candidate's config without the candidate's key prefix reads them.
    now_ms = int(time.time() * 1000)
    marks = {"baseline-1+aaaa": now_ms - 5_000, "older-1+bbbb": now_ms - 60_000}
    redis_client.hset(f"{PREFIX}:rules", mapping=marks)

    code, states, errors = shown(redis_url, "--as-of", NEWEST, *LEADS)

    configured = load_config(environ={}).scoring.rules_version
    assert code == 0 and len(states) == 3
    assert errors == (
        f"state: warning: the leads under redis.key_prefix={PREFIX} were scored "
        f"by rules baseline-1+aaaa, older-1+bbbb (newest first), not this "
        f"config's {configured}: is it the key prefix of these rules?\n"
    )

    redis_client.hset(f"{PREFIX}:rules", configured, str(now_ms))
    code, _, errors = shown(redis_url, "--as-of", NEWEST, *LEADS)
    assert (code, errors) == (0, "")


def test_another_mql_threshold_from_set_is_no_other_rules(
    history: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    # The scores are the config's rules'; --set asks who is an MQL at 55.
    configured = load_config(environ={}).scoring.rules_version
    redis_client.hset(f"{PREFIX}:rules", configured, str(int(time.time() * 1000)))

    code, states, errors = shown(
        redis_url, "--set", "scoring.mql.threshold=55", "--as-of", NEWEST, *LEADS
    )

    assert (code, errors) == (0, "")
    assert len(states) == 3
