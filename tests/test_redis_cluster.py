"""The shared cache on a real Redis Cluster (3 primaries, a replica each) through what clusters
do: a customer's slot resharded while the fleet serves it, a primary killed and its replica
promoted, a whole shard down and back. No request may fail; token calls are counted per customer
and reported (``-rP`` shows them)."""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis_helpers import Minter

from asapp_auth import AuthPipeline
from asapp_auth._redis_servers import _command
from asapp_auth.pipeline import CustomerAuth
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RedisClusterServer

KEY = generate_key()
PROCESSES, THREADS = 3, 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServer]:
    """A cluster of this module's own: its tests kill nodes and move slots."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; CI runs every test")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with RedisClusterServer(3, replicas=1, full_coverage=True) as started:
        yield started


class Fleet:
    """``PROCESSES`` pipelines, each with a cache of its own (as separate processes have), all
    serving one customer per shard; ``THREADS`` threads per process keep requesting."""

    def __init__(self, platform: FakePlatform, cluster: RedisClusterServer, namespace: str):
        self.platform = platform
        options: dict[str, Any] = {"front_ttl": 0.1, "retry_after": 0.2, "lock_ttl": 2.0}
        self.caches = [
            RedisContextCache(cluster.url, keys=[KEY], namespace=namespace, cluster=True, **options)
            for _ in range(PROCESSES)
        ]
        self.pipelines = [
            AuthPipeline([platform.origin], cache=cache, provider_timeout=10)
            for cache in self.caches
        ]
        self.customers = self._one_per_shard(cluster)
        self.minters = {c: Minter(platform, c) for c in self.customers.values()}
        self.auths: list[dict[str, CustomerAuth]] = [
            {c: p.for_customer(c, self.minters[c]) for c in self.customers.values()}
            for p in self.pipelines
        ]
        self.statuses: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _one_per_shard(self, cluster: RedisClusterServer) -> dict[int, str]:
        """A customer id whose key each primary serves: port -> customer id."""
        pipeline, cache = self.pipelines[0], self.caches[0]
        found: dict[int, str] = {}
        for i in range(1000):
            auth = pipeline.for_customer(f"c{i}", Minter(self.platform, f"c{i}"))
            name = cache._name(auth.customer, pipeline._provider_id(auth.customer))  # type: ignore[arg-type]
            found.setdefault(cluster.primary_of(cluster.slot_of(name)), f"c{i}")
            if len(found) == cluster.primaries:
                return found
        raise AssertionError("no customer for some shard")

    def name(self, customer: str) -> str:
        auth = self.auths[0][customer]
        return self.caches[0]._name(auth.customer, self.pipelines[0]._provider_id(auth.customer))  # type: ignore[arg-type]

    def calls(self) -> dict[str, int]:
        return {c: len(m.calls) for c, m in self.minters.items()}

    def _request(self, client: httpx.Client, auth: CustomerAuth) -> None:
        try:
            status = client.get(f"{self.platform.url}/v1/account", auth=auth).status_code
        except Exception as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
        else:
            self.statuses[str(status)] += 1
            if status != 200:
                self.failures.append(str(status))

    def start(self) -> None:
        """Every process's threads request every customer in turn until ``stop``."""

        def load(process: int) -> None:
            limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
            with httpx.Client(limits=limits) as client:
                while not self._stop.is_set():
                    for auth in self.auths[process].values():
                        self._request(client, auth)

        for process in range(PROCESSES):
            for _ in range(THREADS):
                thread = threading.Thread(target=load, args=(process,))
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for cache in self.caches:
            cache.close()

    def burst(self, customer: str) -> None:
        """Every thread of every process requests ``customer`` at once, once."""
        barrier = threading.Barrier(PROCESSES * THREADS)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

        def one(process: int) -> None:
            with httpx.Client(limits=limits) as client:
                barrier.wait()
                self._request(client, self.auths[process][customer])

        threads = [
            threading.Thread(target=one, args=(p,))
            for p in range(PROCESSES)
            for _ in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def refresh_once_more(self, customer: str) -> int:
        """Expire the customer's tokens and burst: the token calls that took."""
        before = self.calls()[customer]
        self.platform.expire(customer_id=customer)
        self.burst(customer)
        return self.calls()[customer] - before

    def shared_again(self, customer: str) -> bool:
        """Every process takes the customer's shard as up and serves the fleet's one copy."""
        if not all(cache._link.up(self.name(customer)) for cache in self.caches):
            return False
        copies = {
            None if entry is None else entry.version
            for p, auths in zip(self.pipelines, self.auths, strict=True)
            for entry in [p.cached(auths[customer].customer)]
        }
        return len(copies) == 1 and None not in copies


def _report(record_property: Any, scenario: str, fleet: Fleet, **figures: object) -> None:
    line = (
        f"{scenario}: {sum(fleet.statuses.values())} requests, {len(fleet.failures)} failed; "
        f"token calls per customer {sorted(fleet.calls().values())}; "
        + ", ".join(f"{k} {v}" for k, v in figures.items())
    )
    print(line)
    record_property(scenario, line)


@pytest.fixture
def fleet(
    platform: FakePlatform, cluster: RedisClusterServer, request: pytest.FixtureRequest
) -> Iterator[Fleet]:
    made = Fleet(platform, cluster, f"c{abs(hash(request.node.nodeid)) % 10**9}")
    made.start()
    try:
        yield made
    finally:
        made.stop()


def _until(condition: Any, timeout: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_customers_slot_resharded_under_load_keeps_one_refresh_for_the_fleet(
    fleet: Fleet, cluster: RedisClusterServer, record_property: Any
) -> None:
    """While a slot moves (keys still on the source, then on the target behind ASK), a rejected
    context is refreshed once for the whole fleet, and no request fails."""
    port, customer = next(iter(fleet.customers.items()))
    fleet.burst(customer)
    slot = cluster.slot_of(fleet.name(customer))
    target = next(p for p in fleet.customers if p != port)
    during: list[int] = []
    cluster.move_slot(
        slot,
        target,
        before_keys=lambda: during.append(fleet.refresh_once_more(customer)),
        after_keys=lambda: during.append(fleet.refresh_once_more(customer)),
    )
    after = fleet.refresh_once_more(customer)
    assert cluster.primary_of(slot) == target
    assert fleet.failures == []
    assert during == [1, 1]
    assert after == 1
    others = [n for c, n in fleet.calls().items() if c != customer]
    assert others == [1] * (len(fleet.customers) - 1)
    _report(record_property, "resharding", fleet, during_the_move=during, after=after)


def test_a_primary_killed_and_its_replica_promoted_loses_no_request(
    fleet: Fleet, cluster: RedisClusterServer, record_property: Any
) -> None:
    """A shard's primary dies mid-load: its customers are served alone while the cluster fails
    over (every shard answers CLUSTERDOWN for a moment under full coverage), then the promoted
    replica (which lacks the scripts) shares again: one refresh for the fleet."""
    port, customer = next(iter(fleet.customers.items()))
    fleet.burst(customer)
    replica = cluster.replica_of(port)
    cluster.kill(port)
    try:
        cluster.wait_primary(replica)
        assert _until(lambda: fleet.shared_again(customer))
        after = fleet.refresh_once_more(customer)
    finally:
        cluster.restart(port)  # back as the replica of the promoted one
        cluster.wait_ok()
    assert fleet.failures == []
    assert after == 1
    others = [n for c, n in fleet.calls().items() if c != customer]
    assert others == [1] * (len(fleet.customers) - 1)
    _report(record_property, "failover", fleet, refresh_after_promotion=after)


def test_a_shard_down_falls_back_for_its_customers_only_and_comes_back(
    fleet: Fleet, cluster: RedisClusterServer, record_property: Any
) -> None:
    """With a whole shard down (primary and replica), its customers are refreshed by each
    process alone, the other shards' customers are still refreshed once for the fleet, and the
    shard's customers are shared again once it is back."""
    cluster.set_full_coverage(False)
    (port, down), (_, up) = list(fleet.customers.items())[:2]
    for customer in (down, up):
        fleet.burst(customer)
    nodes = [port, cluster.replica_of(port)]
    for node in nodes:
        cluster.kill(node)
    try:
        shared_while_down = fleet.refresh_once_more(up)
        alone_while_down = fleet.refresh_once_more(down)
    finally:
        for node in nodes:
            cluster.restart(node)
        cluster.wait_ok()
        cluster.set_full_coverage(True)
    assert _until(lambda: fleet.shared_again(down))
    back = fleet.refresh_once_more(down)
    assert fleet.failures == []
    assert shared_while_down == 1
    assert alone_while_down == PROCESSES
    assert back == 1
    _report(
        record_property,
        "shard down",
        fleet,
        other_shard_while_down=shared_while_down,
        its_customer_while_down=alone_while_down,
        once_back=back,
    )


class Listeners:
    """Two processes' caches (``front_ttl`` of an hour: only a notice drops a copy) serving
    alice, and where the cluster counts their listeners for her channel."""

    def __init__(self, platform: FakePlatform, cluster: RedisClusterServer, namespace: str):
        self.cluster, self.minter = cluster, Minter(platform, "alice")
        self.caches = [
            RedisContextCache(
                cluster.url,
                keys=[KEY],
                namespace=namespace,
                cluster=True,
                front_ttl=3600,
                retry_after=0.2,
            )
            for _ in range(2)
        ]
        self.pipelines = [AuthPipeline([platform.origin], cache=c) for c in self.caches]
        for pipeline in self.pipelines:
            pipeline.load("alice", self.minter)
        customer = self.pipelines[0].customer
        assert customer is not None
        self.name = self.caches[0]._name(customer, self.pipelines[0]._provider_id(customer))  # type: ignore[arg-type]
        self.channel = f"{self.name}:events"

    def listening_on(self, port: int) -> int:
        """How many processes listen for alice's notices on the node on ``port``."""
        answer = _command(port, "PUBSUB", "SHARDNUMSUB", self.channel)
        return int(answer[1])

    def refreshed_elsewhere(self) -> bool:
        """The first process refreshes alice; the second one's copy is dropped by the notice."""
        first, second = self.pipelines
        old = first.get_context()
        assert old is not None
        new = first.get_context(needs_refresh=True)
        assert new is not None
        assert new.token != old.token
        return _until(lambda: second.cached() is None)

    def close(self) -> None:
        for cache in self.caches:
            cache.close()


@pytest.fixture
def listeners(
    platform: FakePlatform, cluster: RedisClusterServer, request: pytest.FixtureRequest
) -> Iterator[Listeners]:
    made = Listeners(platform, cluster, f"l{abs(hash(request.node.nodeid)) % 10**9}")
    try:
        yield made
    finally:
        made.close()


def test_listeners_follow_a_customers_slot_to_its_new_node(
    listeners: Listeners, cluster: RedisClusterServer
) -> None:
    """Once a customer's slot has moved, every process listens for its notices on the new
    owner: a refresh made there still drops the other process's copy."""
    first, second = listeners.pipelines
    token = first.get_context().token  # type: ignore[union-attr]
    assert second.get_context().token == token  # type: ignore[union-attr]
    slot = cluster.slot_of(listeners.name)
    source = cluster.primary_of(slot)
    assert _until(lambda: listeners.listening_on(source) == 2)
    target = next(
        cluster.primary_of(cluster.slot_of(f"{{{tag}}}"))
        for tag in range(1000)
        if cluster.primary_of(cluster.slot_of(f"{{{tag}}}")) != source
    )
    cluster.move_slot(slot, target)
    assert _until(lambda: listeners.listening_on(target) == 2)
    assert listeners.refreshed_elsewhere()
    assert len(listeners.minter.calls) == 2


def test_listeners_follow_a_customers_slot_to_a_promoted_replica(
    listeners: Listeners, cluster: RedisClusterServer
) -> None:
    """Once the primary of a customer's slot died and its replica took over, every process
    listens for its notices on the promoted replica."""
    first, second = listeners.pipelines
    token = first.get_context().token  # type: ignore[union-attr]
    assert second.get_context().token == token  # type: ignore[union-attr]
    primary = cluster.primary_of(cluster.slot_of(listeners.name))
    assert _until(lambda: listeners.listening_on(primary) == 2)
    replica = cluster.replica_of(primary)
    cluster.kill(primary)
    try:
        cluster.wait_primary(replica)
        assert _until(lambda: listeners.listening_on(replica) == 2)
        assert _until(lambda: all(c._link.up(listeners.name) for c in listeners.caches))
        assert listeners.refreshed_elsewhere()
    finally:
        cluster.restart(primary)
        cluster.wait_ok()


def test_classic_notices_move_to_another_node_when_theirs_fails(
    listeners: Listeners, cluster: RedisClusterServer
) -> None:
    """Where the nodes lack sharded pub/sub, each process listens on the namespace's channel on
    any primary; when that node dies, it listens on another and still gets the next notice."""
    for cache in listeners.caches:
        cache._link.client()
        cache._link.sharded = False  # as a Redis 6 cluster answers COMMAND INFO SPUBLISH
    first, second = listeners.pipelines
    token = first.get_context().token  # type: ignore[union-attr]
    assert second.get_context().token == token  # type: ignore[union-attr]
    channel = listeners.name.split(":{")[0] + ":events"

    def where() -> dict[int, int]:
        found = {}
        for port in cluster.ports:
            if cluster.running(port) and "master" in cluster._flags(port):
                found[port] = int(_command(port, "PUBSUB", "NUMSUB", channel)[1])
        return found

    assert _until(lambda: sum(where().values()) == 2)
    dead = next(port for port, count in where().items() if count)
    replica = cluster.replica_of(dead)
    cluster.kill(dead)
    try:
        cluster.wait_primary(replica)
        assert _until(lambda: sum(where().values()) == 2)
        assert _until(lambda: all(c._link.up(listeners.name) for c in listeners.caches))
        assert listeners.refreshed_elsewhere()
    finally:
        cluster.restart(dead)
        cluster.wait_ok()


def test_a_node_whose_port_was_taken_meanwhile_starts_on_other_ports(
    cluster: RedisClusterServer,
) -> None:
    """A cluster whose chosen bus port another program took before the start (a connection's
    local port, say) still starts: that node is started again on other ports."""
    import socket

    made = RedisClusterServer(3)
    chosen = made.ports[0]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", chosen + 10_000))
        squatter.listen()
        try:
            made.start()
            assert chosen not in made.ports
            assert len(made.ports) == 3
            assert all(made.info(port)["cluster_state"] == "ok" for port in made.ports)
        finally:
            made.close()
