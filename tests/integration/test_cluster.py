"""The same scoring code on a real Redis Cluster, and the cluster's faults."""

import dataclasses
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from guarantees import (
    Feeder,
    OutputLog,
    Report,
    ScorerProcess,
    check_outputs,
    make_workload,
    produce_workload,
    raw_config,
    replay_workload,
    wait_caught_up,
)
from test_faults import CONSUMER, RATE, REDIS_TIMEOUT_S, pause_redis
from test_state import PARAMS, RULES, T0, random_updates

from scorer.clients import redis_client
from scorer.config import Config, load_config, parse_config
from scorer.errors import StateStoreError
from scorer.events import parse_time
from scorer.lead import (
    APPLIED,
    DUPLICATE,
    ActivityUpdate,
    MemoryStore,
    Outcome,
    Params,
    Update,
)
from scorer.metrics import Metrics
from scorer.presence import Marks, Presence
from scorer.replay import state_line
from scorer.sandbox import free_ports
from scorer.sandbox.redis import RedisServer
from scorer.state import RedisStore
from tests.unit.command import scorer

# Every test here starts redis-servers of its own.
pytestmark = pytest.mark.integration

NODES = 3
READY_TIMEOUT_S = 30.0
# How long a store call may block while a node is frozen: a behaviour bound
# (a few timeouts), not a benchmark.
FAILING_CALL_BOUND_S = 5 * REDIS_TIMEOUT_S
# cluster-node-timeout of the failover test: a replica takes over after it.
NODE_TIMEOUT_MS = 5000
# cluster-node-timeout that outlasts the fault tests' pause: no failover.
LONG_NODE_TIMEOUT_MS = 60_000
PARTITIONS = 4
FROZEN_RUN_EVENTS = 16_000  # 20 s at the fault tests' rate


@contextmanager
def running_cluster(
    replicas: int = 0, node_timeout_ms: int | None = None
) -> Iterator[list[RedisServer]]:
    """`NODES` masters with `replicas` each; the masters come first."""
    # The bus port defaults to port + 10000, which can exceed 65535 for a
    # high ephemeral port: give each node a free one explicitly.
    options = ["--cluster-enabled", "yes", "--appendonly", "no"]
    if node_timeout_ms is not None:
        options += ["--cluster-node-timeout", str(node_timeout_ms)]
    servers = [
        RedisServer(extra_args=[*options, "--cluster-port", str(bus_port)])
        for bus_port in free_ports(NODES * (1 + replicas))
    ]
    try:
        for server in servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create", *addresses),
                *("--cluster-replicas", str(replicas), "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
        )
        _wait_for_cluster([server.port for server in servers])
        roles = [_role(server.port) for server in servers]
        assert roles == ["master"] * NODES + ["slave"] * (NODES * replicas)
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[redis.RedisCluster]:
    with running_cluster() as servers:
        client = redis.RedisCluster(host="127.0.0.1", port=servers[0].port)
        yield client
        client.close()


def _wait_for_cluster(ports: list[int]) -> None:
    """Every node must agree the cluster is up, and every replica be in sync."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    probes = [redis.Redis(port=port) for port in ports]
    while not all(_ready(probe) for probe in probes):
        assert time.monotonic() < deadline, "the cluster did not become ready"
        time.sleep(0.2)
    for probe in probes:
        probe.close()


def _ready(node: redis.Redis) -> bool:
    # A replica that never synced with its master cannot take over from it.
    up = node.cluster("info").get("cluster_state") == "ok"
    link = node.info("replication").get("master_link_status", "up")
    return bool(up and link == "up")


def _role(port: int) -> str:
    with redis.Redis(port=port) as node:
        return str(node.info("replication")["role"])


def cluster_config(port: int) -> Config:
    """The default config on a cluster, reached at the node on `port`."""
    overrides = {
        "redis.url": f"redis://127.0.0.1:{port}/0",
        "redis.cluster": "true",
        "redis.timeout_s": str(REDIS_TIMEOUT_S),
    }
    return load_config(environ={}, overrides=overrides)


def many_leads(count: int, at_ms: int = T0) -> list[Update]:
    """One update each for `count` leads: their calls go to every node."""
    return [
        ActivityUpdate(f"lead-{i}", f"e{i}@{at_ms}", at_ms, RULES[0])
        for i in range(count)
    ]


def test_scores_on_a_cluster_equal_the_reference_model(
    cluster: redis.RedisCluster,
) -> None:
    cluster.flushall()
    updates = random_updates(seed=7, count=600)
    memory = MemoryStore(PARAMS)
    store = RedisStore(cluster, PARAMS, key_prefix="c", ops_per_call=16)

    expected = memory.apply(updates)
    got = []
    for start in range(0, len(updates), 150):
        got += store.apply(updates[start : start + 150])

    assert got == expected
    for lead in memory.lead_ids():
        assert store.snapshot(lead) == memory.snapshot(lead)


def test_rule_sets_on_one_prefix_notice_each_other_on_a_cluster(
    cluster: redis.RedisCluster,
) -> None:
    cluster.flushall()
    config = cluster_config(cluster.get_default_node().port)
    looks = [key_prefix_presence(config, v) for v in ("default-1+aa", "cand-2+bb")]

    for presence in (*looks, looks[0]):
        presence.look()

    assert [p.others["key_prefix"] for p in looks] == [{"cand-2+bb"}, {"default-1+aa"}]


def key_prefix_presence(config: Config, rules_version: str) -> Presence:
    place = Marks.of_key_prefix(partial(redis_client, config), "c", rules_version)
    return Presence(rules_version, [place], Metrics().other_rules)


def test_scorer_state_reads_every_lead_of_a_cluster(
    cluster: redis.RedisCluster,
) -> None:
    cluster.flushall()
    config = cluster_config(cluster.get_default_node().port)
    params = Params.of(config.scoring)
    updates = random_updates(seed=11, count=300)
    memory = MemoryStore(params)
    memory.apply(updates)
    store = RedisStore(cluster, params, key_prefix=config.redis.key_prefix)
    store.apply(updates)
    as_of = "2025-08-01T00:00:00Z"  # after every update (T0 + 45 days)

    # --all scans every master; the leads' keys live on all three.
    done = scorer(
        "state", "--redis-url", config.redis.url, "--set", "redis.cluster=true",
        "--as-of", as_of, "--all",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    as_of_ms = parse_time(as_of, "--as-of")
    expected = {
        lead: state_line(snapshot)
        for lead in memory.lead_ids()
        if (snapshot := memory.snapshot(lead, as_of_ms)) is not None
    }
    assert sorted(done.stdout.splitlines(keepends=True)) == sorted(expected.values())
    nodes = {cluster.get_node_from_key(store.keys(lead)[0]).port for lead in expected}
    assert len(nodes) == NODES


def test_a_lead_spreads_over_no_more_than_one_node(
    cluster: redis.RedisCluster,
) -> None:
    store = RedisStore(cluster, PARAMS, key_prefix="c")
    slots = {cluster.keyslot(key) for key in store.keys("acme:42")}

    assert len(slots) == 1
    leads_per_node = {
        cluster.get_node_from_key(store.keys(f"lead-{i}")[0]).port for i in range(50)
    }
    assert len(leads_per_node) == NODES


@pytest.mark.parametrize("lead", ["}acme", "~acme", "~}acme", "a}b", "{x}", "}"])
def test_awkward_lead_ids_keep_their_keys_in_one_slot(
    cluster: redis.RedisCluster, lead: str
) -> None:
    cluster.flushall()
    store = RedisStore(cluster, PARAMS, key_prefix="c")
    memory = MemoryStore(PARAMS)
    mine = ActivityUpdate(lead, "e1", T0, RULES[0])

    slots = {cluster.keyslot(key) for key in store.keys(lead)}
    got = store.apply([mine])

    assert len(slots) == 1
    assert got == memory.apply([mine])
    assert list(store.lead_ids()) == [lead]


def test_a_call_follows_a_slot_that_moved(cluster: redis.RedisCluster) -> None:
    cluster.flushall()
    store = RedisStore(cluster, PARAMS, key_prefix="m")
    memory = MemoryStore(PARAMS)
    key = store.keys("moving")[0]
    slot = cluster.keyslot(key)
    owner = cluster.get_node_from_key(key)
    other = next(node for node in cluster.get_primaries() if node != owner)
    mine = ActivityUpdate("moving", "e1", T0, RULES[0])

    # The client's slot map still names the owner, which answers MOVED.
    _assign_slot(cluster, slot, other)
    try:
        got = store.apply([mine])
    finally:
        for moved in store.keys("moving"):
            cluster.delete(moved)
        _assign_slot(cluster, slot, owner)

    assert got == memory.apply([mine])


def _assign_slot(cluster: redis.RedisCluster, slot: int, node: object) -> None:
    """Give an empty slot to `node` on every master (CLUSTER SETSLOT ... NODE)."""
    primaries = cluster.get_primaries()
    node_id = cluster.get_redis_connection(node).cluster("myid")
    for primary in primaries:
        cluster.get_redis_connection(primary).cluster("setslot", slot, "node", node_id)


def test_a_call_fails_within_a_few_timeouts_while_a_master_is_frozen() -> None:
    with running_cluster() as servers:
        url_node, frozen = servers[0], servers[1]
        store = RedisStore(redis_client(cluster_config(url_node.port)), PARAMS)
        memory = MemoryStore(PARAMS)
        first, second = many_leads(300), many_leads(300, T0 + 1000)
        store.apply(first)
        memory.apply(first)

        # Without a bound, the call would return only once the node is back.
        with frozen_for(frozen, FAILING_CALL_BOUND_S + 5):
            started = time.monotonic()
            with pytest.raises(StateStoreError, match="Timeout"):
                store.apply(second)
            blocked_s = time.monotonic() - started

        # The updates that did run before are found applied, not run again.
        again = store.apply(second)
        expected = memory.apply(second)

    assert blocked_s < FAILING_CALL_BOUND_S
    assert {_status(outcome) for outcome in again} <= {APPLIED, DUPLICATE}
    assert _as_applied(again) == expected


def test_a_replica_that_took_over_is_found_while_its_master_stays_frozen() -> None:
    with running_cluster(replicas=1, node_timeout_ms=NODE_TIMEOUT_MS) as servers:
        url_node, frozen = servers[0], servers[1]
        store = RedisStore(redis_client(cluster_config(url_node.port)), PARAMS)
        memory = MemoryStore(PARAMS)
        updates = many_leads(300)
        store.load_script()

        attempts_s: list[float] = []
        got = None
        with frozen_for(frozen, READY_TIMEOUT_S) as still_frozen:
            while got is None and still_frozen():
                started = time.monotonic()
                try:
                    got = store.apply(updates)
                except StateStoreError:
                    time.sleep(0.2)  # as the pipeline waits between attempts
                attempts_s.append(time.monotonic() - started)
            frozen_at_success = still_frozen()

    assert got is not None and frozen_at_success, "no success while frozen"
    assert max(attempts_s) < FAILING_CALL_BOUND_S
    assert _as_applied(got) == memory.apply(updates)


@contextmanager
def frozen_for(server: RedisServer, at_most_s: float) -> Iterator[Callable[[], bool]]:
    """Freeze `server` (SIGSTOP) for the block, and at most `at_most_s`.

    Yields a function that tells whether the server is still frozen.
    """
    server.pause()
    thaw = threading.Timer(at_most_s, server.resume)
    thaw.start()
    try:
        yield lambda: not thaw.finished.is_set()
    finally:
        thaw.cancel()
        server.resume()


def _status(outcome: Outcome | None) -> str:
    assert outcome is not None
    return outcome.status


def _as_applied(outcomes: list[Outcome | None]) -> list[Outcome | None]:
    """A repeated update returns the first outcome, as a duplicate."""
    return [
        None if o is None else dataclasses.replace(o, status=APPLIED) for o in outcomes
    ]


def test_a_scorer_holds_its_batch_while_a_master_is_frozen(
    kafka_bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    """The fault test's long pause (test_faults.py), on one master of a cluster.

    No replica takes over: the node timeout outlasts the pause.
    """
    events, out, dlq = fresh_topics("events", "out", "dlq", partitions=PARTITIONS)
    with running_cluster(node_timeout_ms=LONG_NODE_TIMEOUT_MS) as servers:
        url_node, frozen = servers[0], servers[1]
        raw = cluster_raw_config(kafka_bootstrap, url_node.port, events, out, dlq)
        config = parse_config(raw)
        workload = make_workload(FROZEN_RUN_EVENTS, 800, seed=23)
        expected = replay_workload(config, workload)

        reader = OutputLog(kafka_bootstrap, out)
        feeder = Feeder(kafka_bootstrap, events, workload, RATE)
        scorer = ScorerProcess(raw, tmp_path, "scorer")
        reader.start()
        scorer.start()
        try:
            scorer.wait_assigned()
            feeder.start()
            reader.wait_for_more(30.0)
            time.sleep(2.0)
            figures = pause_redis(frozen, scorer, reader)
            feeder.finish()
            wait_caught_up(kafka_bootstrap, raw["kafka"]["group_id"], events)
            assert scorer.terminate() == 0
        finally:
            scorer.ensure_stopped()
        outputs = reader.finish()

    log = scorer.log_text()
    assert " WARNING scorer.pipeline redis unavailable; batch held" in log
    figures |= check_outputs(expected, outputs)
    Report("cluster-frozen-master", figures).print()


def test_a_scorer_waits_for_the_node_of_its_url_at_start(
    kafka_bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq")
    with running_cluster(replicas=1) as servers:
        url_node = servers[NODES]  # a replica: the cluster works without it
        url_node.stop()
        raw = cluster_raw_config(kafka_bootstrap, url_node.port, events, out, dlq)
        config = parse_config(raw)
        workload = make_workload(300, 30, seed=29)
        expected = replay_workload(config, workload)

        reader = OutputLog(kafka_bootstrap, out)
        scorer = ScorerProcess(raw, tmp_path, "scorer")
        reader.start()
        scorer.start()
        try:
            scorer.wait_assigned()  # up, and in the group, without Redis
            produce_workload(kafka_bootstrap, events, workload)
            wait_until(
                lambda: (
                    scorer.metric("scorer_waiting_for_dependency", dependency="redis")
                    == 1.0
                )
            )
            url_node.restart()
            reader.wait_for(len(expected.outputs))
            assert scorer.terminate() == 0
        finally:
            scorer.ensure_stopped()
        outputs = reader.finish()

    log = scorer.log_text()
    assert "redis unreachable at start; scoring waits for it" in log
    assert "Traceback" not in log
    check_outputs(expected, outputs)


def test_a_scorer_finds_the_cluster_by_another_node_when_its_url_node_is_down(
    kafka_bootstrap: str, fresh_topics: Any, tmp_path: Path
) -> None:
    events, out, dlq = fresh_topics("events", "out", "dlq")
    with running_cluster(replicas=1) as servers:
        url_node, other = servers[NODES], servers[0]
        url_node.stop()
        raw = cluster_raw_config(kafka_bootstrap, url_node.port, events, out, dlq)
        raw["redis"]["cluster_nodes"] = [f"127.0.0.1:{other.port}"]
        config = parse_config(raw)
        workload = make_workload(300, 30, seed=31)
        expected = replay_workload(config, workload)

        reader = OutputLog(kafka_bootstrap, out)
        scorer = ScorerProcess(raw, tmp_path, "scorer")
        reader.start()
        scorer.start()
        try:
            scorer.wait_assigned()
            produce_workload(kafka_bootstrap, events, workload)
            reader.wait_for(len(expected.outputs))  # the url's node still down
            assert scorer.terminate() == 0
        finally:
            scorer.ensure_stopped()
        outputs = reader.finish()

    log = scorer.log_text()
    assert "redis unreachable" not in log and "redis unavailable" not in log
    check_outputs(expected, outputs)


def cluster_raw_config(
    bootstrap: str, port: int, events: str, out: str, dlq: str
) -> dict[str, Any]:
    """The fault tests' config, on the cluster reached at the node on `port`."""
    raw = raw_config(
        bootstrap,
        f"redis://127.0.0.1:{port}/0",
        events,
        out,
        dlq,
        consumer_settings=CONSUMER,
        redis_timeout_s=REDIS_TIMEOUT_S,
    )
    raw["redis"]["cluster"] = True
    return raw


def wait_until(done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.2)


def test_a_cluster_with_a_master_that_may_evict_is_refused(
    cluster: redis.RedisCluster,
) -> None:
    node = cluster.get_primaries()[-1]
    connection = cluster.get_redis_connection(node)
    connection.config_set("maxmemory-policy", "allkeys-lfu")
    connection.config_set("maxmemory", "1gb")
    try:
        with pytest.raises(StateStoreError) as refused:
            RedisStore(cluster, PARAMS, key_prefix="e").load_script()
    finally:
        connection.config_set("maxmemory", "0")
        connection.config_set("maxmemory-policy", "noeviction")

    assert f"Redis {node.name} may evict keys" in str(refused.value)
    assert "maxmemory-policy allkeys-lfu" in str(refused.value)
