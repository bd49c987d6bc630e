"""The same scoring code on a real three-node Redis Cluster."""

import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from test_state import PARAMS, RULES, T0, random_updates

from scorer.lead import ActivityUpdate, MemoryStore
from scorer.sandbox import free_ports
from scorer.sandbox.redis import RedisServer
from scorer.state import RedisStore

NODES = 3
READY_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[redis.RedisCluster]:
    # The bus port defaults to port + 10000, which can exceed 65535 for a
    # high ephemeral port: give each node a free one explicitly.
    servers = [
        RedisServer(
            extra_args=[
                *("--cluster-enabled", "yes", "--appendonly", "no"),
                *("--cluster-port", str(bus_port)),
            ]
        )
        for bus_port in free_ports(NODES)
    ]
    try:
        for server in servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create", *addresses),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
        )
        client = _wait_for_cluster([server.port for server in servers])
        yield client
        client.close()
    finally:
        for server in servers:
            server.close()


def _wait_for_cluster(ports: list[int]) -> redis.RedisCluster:
    """Every node must agree the cluster is up, not just the first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    probes = [redis.Redis(port=port) for port in ports]
    while any(p.cluster("info").get("cluster_state") != "ok" for p in probes):
        assert time.monotonic() < deadline, "the cluster did not become ready"
        time.sleep(0.2)
    for probe in probes:
        probe.close()
    return redis.RedisCluster(host="127.0.0.1", port=ports[0])


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
