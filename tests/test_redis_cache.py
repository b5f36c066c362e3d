"""The shared cache against a real redis-server: one refresh for a fleet, sealed entries,
notices between processes, and Redis trouble that never fails a request."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis_helpers import Minter, Target, cut_off

from asapp_auth import AuthContext, AuthPipeline, CachedContext
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import Exchange, FakePlatform

WORKER = Path(__file__).with_name("fleet_worker.py")
KEY = generate_key()


@pytest.fixture
def minting(platform: FakePlatform) -> list[str]:
    """``POST /mint`` on the platform: a new token for the customer, after 50 ms."""
    minted: list[str] = []
    lifetime = {"value": 300.0}

    def mint(exchange: Exchange) -> None:
        time.sleep(0.05)
        customer = json.loads(exchange.body)["customer"]
        token = platform.issue_token(customer, lifetime["value"])
        minted.append(token)
        exchange.answer(200, {"token": token, "expires_in": lifetime["value"]})

    platform.route("/mint", mint)
    return minted


def make_cache(target: Target, namespace: str, **options: Any) -> RedisContextCache:
    return target.cache(namespace, KEY, **options)


def pipeline_for(platform: FakePlatform, cache: RedisContextCache, **options: Any) -> AuthPipeline:
    return AuthPipeline([platform.origin], cache=cache, **options)


def two_processes(
    platform: FakePlatform, target: Target, namespace: str, minter: Minter, **cache: Any
) -> tuple[AuthPipeline, AuthPipeline]:
    """Two pipelines with caches of their own on one Redis namespace, as two processes have,
    both serving alice with ``minter``."""
    pipelines = []
    for _ in range(2):
        pipeline = pipeline_for(platform, make_cache(target, namespace, **cache))
        pipeline.load("alice", minter)
        pipelines.append(pipeline)
    return pipelines[0], pipelines[1]


# -- sharing between processes ------------------------------------------------------------------


def test_a_context_fetched_by_one_process_serves_another(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    first = pipeline_for(platform, make_cache(target, namespace))
    second = pipeline_for(platform, make_cache(target, namespace))
    first.load("alice", minter)
    second.load("alice", minter)
    token = first.get_context().token
    assert second.get_context().token == token
    assert minter.calls == [False]
    with httpx.Client(auth=second) as client:
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "alice"}
    # Stored sealed: neither the token nor the customer id is readable in Redis.
    names = target.names(namespace)
    assert names
    assert all(b"alice" not in name for name in names)
    values = [b"".join(target.raw().hvals(name)) for name in names]
    assert all(token.encode() not in v and b"alice" not in v for v in values)


def test_other_namespaces_and_other_scopes_do_not_share(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a = pipeline_for(platform, make_cache(target, namespace))
    b = pipeline_for(platform, make_cache(target, namespace + "-other"))
    a.load("alice", minter)
    b.load("alice", minter)
    assert a.get_context().token != b.get_context().token
    other = Minter(platform, "alice")
    other.cache_scope = "another-tenant"
    c = pipeline_for(platform, make_cache(target, namespace))
    c.load("alice", other)
    assert c.get_context().token != a.get_context().token


def test_providers_without_a_scope_are_never_shared(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """Two tenants' closures made by one factory look alike across processes: not shared."""

    def provider_for(tenant: str) -> Any:
        def provider(customer_id: str, needs_refresh: bool) -> AuthContext:
            return platform.context_for(f"{tenant}-{customer_id}")

        return provider

    pipeline = pipeline_for(platform, make_cache(target, namespace))
    first = pipeline.for_customer("42", provider_for("tenant-a")).get_context()
    second = pipeline.for_customer("42", provider_for("tenant-b")).get_context()
    assert first is not None
    assert second is not None
    assert platform.customer_of(first.token) == "tenant-a-42"
    assert platform.customer_of(second.token) == "tenant-b-42"
    assert target.names(namespace) == []


def test_plugins_share_by_name_settings_and_origins(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    from asapp_auth.hookspecs import hookimpl

    class Tenant:
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        @hookimpl
        def provide_context(self, customer: Any) -> AuthContext:
            return platform.context_for(f"{self.tenant}-{customer.id}")

    def token(tenant: str, name: str | None, origins: list[str]) -> str | None:
        pipeline = AuthPipeline(origins, cache=make_cache(target, namespace))
        pipeline.register(Tenant(tenant), name)
        return pipeline.for_customer("42").get_context().token  # type: ignore[union-attr]

    here = [platform.origin]
    shared = token("a", "tenants", here)
    assert token("a", "tenants", here) == shared
    assert token("a", "tenants", [*here, "https://other.example"]) != shared
    assert token("a", None, here) != shared  # unnamed: pluggy names it by object id
    assert token("a", None, here) != token("a", None, here)


def _run_fleet(
    platform: FakePlatform,
    target: Target,
    namespace: str,
    *,
    workers: int,
    callers: int,
    mode: str,
) -> list[dict[str, Any]]:
    start_at = time.time() + 2.0
    options = {
        "redis": target.url,
        "cluster": target.cluster,
        "key": KEY,
        "namespace": namespace,
        "platform": platform.url,
        "customer": "alice",
        "callers": callers,
        "mode": mode,
        "start_at": start_at,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _report(
    record_property: Any,
    scenario: str,
    target: Target,
    results: list[dict[str, Any]],
    minting: list[str],
) -> None:
    """Print (``-rP`` shows it) and record the fleet's requests, failures and token calls."""
    requests = sum(sum(r["statuses"].values()) + len(r["errors"]) for r in results)
    failed = sum(
        len(r["errors"]) + sum(n for s, n in r["statuses"].items() if s != "200") for r in results
    )
    where = "cluster" if target.cluster else "one server"
    line = (
        f"{scenario} on {where}: {requests} requests, {failed} failed, {len(minting)} token calls"
    )
    print(line)
    record_property(scenario, line)


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_a_fleet_refreshes_a_rejected_context_once(
    platform: FakePlatform,
    target: Target,
    namespace: str,
    minting: list[str],
    *,
    mode: str,
    record_property: Any,
) -> None:
    """4 processes x 50 concurrent requests on a context the platform has expired: 1 refresh."""
    seeder = pipeline_for(platform, make_cache(target, namespace))
    seeder.load("alice", Minter(platform, "alice"))
    stale = seeder.get_context().token
    platform.expire(stale)
    results = _run_fleet(platform, target, namespace, workers=4, callers=50, mode=mode)
    _report(record_property, f"fleet on expiry ({mode})", target, results, minting)
    assert [r["errors"] for r in results] == [[]] * 4
    assert [r["statuses"] for r in results] == [{"200": 50}] * 4
    assert len(minting) == 1, f"{len(minting)} token calls for the fleet"
    assert sum(len(r["asked"]) for r in results) == 1
    assert seeder.get_context(needs_refresh=False).token in (stale, minting[0])


def test_a_fleet_starting_cold_makes_one_token_call(
    platform: FakePlatform,
    target: Target,
    namespace: str,
    minting: list[str],
    record_property: Any,
) -> None:
    """4 processes x 50 concurrent requests with nothing cached anywhere: 1 token call."""
    results = _run_fleet(platform, target, namespace, workers=4, callers=50, mode="threads")
    _report(record_property, "fleet cold", target, results, minting)
    assert [r["statuses"] for r in results] == [{"200": 50}] * 4
    assert len(minting) == 1


def test_a_lock_holder_killed_mid_refresh_is_taken_over_within_the_lock_lifetime(
    platform: FakePlatform, target: Target, namespace: str, minting: list[str]
) -> None:
    """A process killed in its provider leaves a lock that lapses within lock_ttl; the next
    process with the same provider waits that out and refreshes, once."""
    options = {
        "redis": target.url,
        "cluster": target.cluster,
        "key": KEY,
        "namespace": namespace,
        "platform": platform.url,
        "customer": "alice",
        "callers": 1,
        "mode": "threads",
        "start_at": 0,
        "hang": True,
        "lock_ttl": 1.5,
    }
    holder = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "PROVIDER_CALLED"
        holder.kill()
    finally:
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    [name] = [n.decode() for n in target.names(namespace)]
    # The dead holder's lock is still there, and lapses within lock_ttl of its last renewal.
    deadline = int(target.raw().hget(name, "lx"))
    assert 0 < deadline - target.now_ms(name) <= 1500
    minter = Minter(platform, "alice")
    minter.cache_scope = "fleet-worker"  # the worker's provider: the same key, the same lock
    cache = make_cache(target, namespace, lock_ttl=1.5)
    survivor = pipeline_for(platform, cache, provider_timeout=30)
    survivor.load("alice", minter)
    assert survivor.get_context().token
    assert minter.calls == [False]
    assert cache.stats["produced"] == 1
    assert target.names(namespace) == [name.encode()]


def test_a_waiter_gives_up_at_the_provider_timeout_and_caches_nothing(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    cache = make_cache(target, namespace, lock_ttl=30)
    pipeline = pipeline_for(platform, cache, provider_timeout=0.3)
    minter = Minter(platform, "alice")
    pipeline.load("alice", minter)
    name = cache._name(pipeline.customer, pipeline._provider_id(pipeline.customer))  # type: ignore[arg-type]
    target.hold_lock(name, "someone-else", 30)
    from asapp_auth.errors import ProviderTimeoutError

    with pytest.raises(ProviderTimeoutError, match="kept refreshing") as caught:
        pipeline.get_context()
    assert caught.value.customer_id == "alice"
    assert minter.calls == []
    target.drop_lock(name)
    assert pipeline.get_context().token
    assert minter.calls == [False]


# -- notices ------------------------------------------------------------------------------------


def _until(condition: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_refresh_after_a_rejection_reaches_the_other_processes_copies(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, front_ttl=600)
    old = a.get_context().token
    assert b.get_context().token == old
    platform.expire(old)
    with httpx.Client(auth=a) as client:
        assert client.get(f"{platform.url}/v1/account").status_code == 200
    new = a.get_context().token
    assert new != old
    # B's copy is dropped by the notice, long before its front_ttl: it reads the new one.
    assert _until(lambda: b.cached() is None)
    assert b.get_context().token == new
    assert minter.calls == [False, True]


def test_a_cluster_without_sharded_pub_sub_sends_notices_on_the_namespace_channel(
    platform: FakePlatform, redis_cluster: Any, namespace: str
) -> None:
    """Where the nodes lack SSUBSCRIBE (before Redis 7), notices go to the classic channel, which
    the cluster relays to every node: another process's copy is still dropped at once."""
    target = Target(redis_cluster.url, cluster=True)
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, front_ttl=600)
    for pipeline in (a, b):
        cache = pipeline._cache
        assert isinstance(cache, RedisContextCache)
        cache._link.client()
        cache._link.sharded = False  # as a Redis 6 cluster answers COMMAND INFO SPUBLISH
    old = a.get_context().token
    assert b.get_context().token == old
    assert a.get_context(needs_refresh=True).token != old
    assert _until(lambda: b.cached() is None)
    assert minter.calls == [False, True]


def test_clearing_a_customer_drops_its_context_for_the_fleet(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, front_ttl=600)
    old = a.get_context().token
    assert b.get_context().token == old
    a.clear()
    assert _until(lambda: b.cached() is None)
    assert b.get_context().token != old
    assert minter.calls == [False, False]


def test_a_copy_expires_after_front_ttl_and_is_read_again_not_refreshed(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    cache = make_cache(target, namespace, front_ttl=0.1)
    pipeline = pipeline_for(platform, cache)
    pipeline.load("alice", minter)
    token = pipeline.get_context().token
    reads = cache.stats["reads"]
    time.sleep(0.15)
    assert pipeline.get_context().token == token
    assert cache.stats["reads"] > reads
    assert minter.calls == [False]


# -- entries that must not be used --------------------------------------------------------------


def test_tampered_foreign_and_misplaced_entries_are_misses_with_a_warning(
    platform: FakePlatform,
    target: Target,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, bob = Minter(platform, "alice"), Minter(platform, "bob")
    first = pipeline_for(platform, make_cache(target, namespace))
    first.load("alice", alice)
    alice_token = first.get_context().token
    cache = make_cache(target, namespace)
    reader = pipeline_for(platform, cache)
    customer = reader.set_customer("alice", alice)
    key = cache._name(customer, reader._provider_id(customer))
    sealed = target.entry(key)
    assert sealed is not None

    def read_fresh(pipeline: AuthPipeline) -> str | None:
        cache.clear()
        return pipeline.get_context().token

    caplog.set_level(logging.WARNING, "asapp_auth")
    target.put_entry(key, sealed[:-1] + bytes([sealed[-1] ^ 1]))  # tampered
    assert read_fresh(reader) not in (None, alice_token)
    foreign = make_cache(target, namespace, keys=[generate_key()])
    other = pipeline_for(platform, foreign)
    other.load("alice", alice)
    foreign.clear()
    target.raw().delete(key)
    other.get_context()  # alice's entry, sealed with a key the others do not have
    assert read_fresh(reader) != other.get_context().token
    # Alice's entry copied under Bob's name is not Bob's context.
    alices = target.entry(key)
    assert alices is not None
    bob_customer = reader.set_customer("bob", bob)  # (which drops Alice's entry from Redis)
    target.put_entry(cache._name(bob_customer, reader._provider_id(bob_customer)), alices)
    assert platform.customer_of(read_fresh(reader)) == "bob"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Each cache warns once a minute at most, whatever the number of bad entries.
    assert 1 <= len([w for w in warnings if "could not be used" in w]) <= 2
    assert alice_token not in caplog.text


def _alices_key(platform: FakePlatform, target: Target, namespace: str) -> str:
    cache = make_cache(target, namespace)
    pipeline = pipeline_for(platform, cache)
    customer = pipeline.set_customer("alice", Minter(platform, "alice"))
    return cache._name(customer, pipeline._provider_id(customer))  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", [b"1" + b"0" * 30, b"9" * 15])
def test_an_entry_with_a_huge_generation_is_replaced_and_sharing_resumes(
    platform: FakePlatform,
    target: Target,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    prefix: bytes,
) -> None:
    """A tampered entry whose generation is out of range (or in range but unreadable) is
    refused with a warning and replaced under the lock: the next process adopts the new one."""
    minter = Minter(platform, "alice")
    first = pipeline_for(platform, make_cache(target, namespace))
    first.load("alice", minter)
    assert first.get_context() is not None
    key = _alices_key(platform, target, namespace)
    target.put_entry(key, prefix + b"|not-a-sealed-value")
    caplog.set_level(logging.WARNING, "asapp_auth")
    b, c = two_processes(platform, target, namespace, minter)
    token = b.get_context().token
    assert c.get_context().token == token
    assert len(minter.calls) == 2  # the first process, then one refresh for B and C
    stored = target.entry(key)
    assert stored is not None
    assert int(stored.partition(b"|")[0]) < 10**15
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("replaced" in w for w in warnings)
    if len(prefix) > 15:
        assert any("out of range" in w and "alice" not in w for w in warnings)


def test_a_good_copy_replaces_a_tampered_entry_without_asking_the_provider(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """A process whose copy is still good, finding a generation of 10**30 in Redis, stores its
    copy over it under the lock; another process then adopts that copy."""
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter)
    token = a.get_context().token
    key = _alices_key(platform, target, namespace)
    target.put_entry(key, b"1" + b"0" * 30 + b"|junk")
    copy = a.cached()
    assert copy is not None
    copy.expires_at = 0.0  # A's copy lapses in front (it is still valid): A reads Redis again
    assert a.get_context().token == token
    assert b.get_context().token == token
    assert minter.calls == [False]


# -- asyncio ------------------------------------------------------------------------------------


def test_many_tasks_on_two_processes_share_one_fetch_and_survive_cancellation(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    minter.delay = 0.2
    a, b = two_processes(platform, target, namespace, minter)

    async def run() -> set[str | None]:
        doomed = [asyncio.create_task(a.aget_context()) for _ in range(50)]
        await asyncio.sleep(0.05)
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        tasks = [p.aget_context() for p in (a, b) for _ in range(200)]
        return {context.token for context in await asyncio.gather(*tasks) if context}

    tokens = asyncio.run(run())
    assert len(tokens) == 1
    assert minter.calls == [False]


# -- rotation -----------------------------------------------------------------------------------


def test_a_rotated_refresh_token_is_never_used_twice_across_processes(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """Each refresh spends the refresh token kept in the newest context's state."""
    spent: list[str] = []
    reused: list[str] = []
    lock = threading.Lock()

    def provider(customer_id: str, needs_refresh: bool) -> AuthContext:
        return AuthContext({"Auth": {"Token": "unused"}})  # replaced by the plugin below

    class Rotating:
        from asapp_auth.hookspecs import hookimpl

        @hookimpl
        def provide_context(self, customer: Any, previous: AuthContext | None) -> AuthContext:
            refresh = None if previous is None else previous.state.get("refresh_token")
            with lock:
                if refresh is not None:
                    (reused if refresh in spent else spent).append(refresh)
                new_refresh = f"rt-{len(spent)}-{time.monotonic_ns()}"
            context = platform.context_for(customer.id, 0.6)
            return AuthContext(
                context.to_dict(), expires_in=0.6, state={"refresh_token": new_refresh}
            )

        cache_scope = "rotating"

    pipelines = []
    for _ in range(3):
        pipeline = pipeline_for(
            platform,
            make_cache(target, namespace, front_ttl=0.05),
            expiry_margin=0.05,
            refresh_ahead=0.2,
        )
        pipeline.register(Rotating(), "rotating")
        pipeline.load("alice")
        pipelines.append(pipeline)
    deadline = time.monotonic() + 2.5
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            for pipeline in pipelines:
                assert client.get(f"{platform.url}/v1/account", auth=pipeline).status_code == 200
    assert reused == []
    assert len(spent) >= 3  # several refreshes happened, each from the newest refresh token


# -- what the review found ----------------------------------------------------------------------


def test_the_lock_is_kept_while_a_slow_provider_runs(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """A provider slower than lock_ttl keeps the lock: the other process waits, never refreshes."""
    entered = threading.Event()

    class Slow(Minter):
        def __call__(self, needs_refresh: bool) -> AuthContext:
            entered.set()
            return super().__call__(needs_refresh)

    minter = Slow(platform, "alice")
    minter.delay = 2.5  # past lock_ttl twice over: kept by renewals alone
    a, b = two_processes(platform, target, namespace, minter, lock_ttl=1.0)
    first = threading.Thread(target=a.get_context)
    first.start()
    assert entered.wait(10)
    token = b.get_context().token
    first.join()
    assert minter.calls == [False]
    assert a.get_context().token == token


def test_a_customer_cleared_during_a_refresh_does_not_come_back(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter)
    old = a.get_context().token
    minter.delay = 0.5
    refreshing = threading.Thread(target=a.get_context, kwargs={"needs_refresh": True})
    refreshing.start()
    time.sleep(0.1)
    b.clear()  # the customer logged out while A was refreshing
    refreshing.join()
    assert _until(lambda: target.has_field(namespace, "g"))
    third = pipeline_for(platform, make_cache(target, namespace))
    late = Minter(platform, "alice")
    third.load("alice", late)
    assert third.get_context().token != old
    assert late.calls == [False]  # nothing of the cleared customer was served


def test_a_rejected_context_is_not_served_again_when_its_refresh_failed(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a = pipeline_for(platform, make_cache(target, namespace))
    a.load("alice", minter)
    revoked = a.get_context().token
    platform.expire(revoked)

    def failing(needs_refresh: bool) -> AuthContext:
        raise RuntimeError("the token service is down")

    failing.cache_scope = "minter"  # type: ignore[attr-defined]
    b = pipeline_for(platform, make_cache(target, namespace))
    b.load("alice", failing)
    from asapp_auth.errors import ProviderError

    with httpx.Client(auth=b) as client, pytest.raises(ProviderError):
        client.get(f"{platform.url}/v1/account")
    c = pipeline_for(platform, make_cache(target, namespace))
    fresh = Minter(platform, "alice")
    c.load("alice", fresh)
    with httpx.Client(auth=c) as client:
        assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert fresh.calls == [True]  # asked for a fresh one: the refused one was not served
    sent = [r.headers.get("authorization") for r in platform.requests_to("/v1/account")]
    assert sent.count(f"Bearer {revoked}") == 1  # B's one request; C never sent it


def test_a_forced_refresh_produces_even_without_a_local_copy(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter)
    old = a.get_context().token
    assert b.get_context(needs_refresh=True).token != old
    assert minter.calls == [False, True]


def test_a_context_refreshed_while_redis_was_away_wins_when_it_is_back(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a_cache = make_cache(target, namespace, front_ttl=0.05)
    a = pipeline_for(platform, a_cache)
    b = pipeline_for(platform, make_cache(target, namespace, front_ttl=0.05))
    a.load("alice", minter)
    b.load("alice", minter)
    old = a.get_context().token
    cut_off(a_cache, 60)  # A is cut off from Redis
    newer = a.get_context(needs_refresh=True).token
    assert newer != old
    cut_off(a_cache, 0)  # and reaches it again
    time.sleep(0.06)
    assert a.get_context().token == newer  # A does not go back to the older one in Redis
    time.sleep(0.06)
    assert b.get_context().token == newer  # and shared it
    assert minter.calls == [False, True]


def test_the_state_outlives_the_context_for_the_next_refresh(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    from asapp_auth.hookspecs import hookimpl

    seen: list[str | None] = []

    class Stateful:
        @hookimpl
        def provide_context(self, customer: Any, previous: AuthContext | None) -> AuthContext:
            seen.append(None if previous is None else previous.state.get("refresh_token"))
            context = platform.context_for(customer.id, 0.3)
            return AuthContext(context.to_dict(), expires_in=0.3, state={"refresh_token": "rt"})

    def pipeline() -> AuthPipeline:
        made = AuthPipeline(
            [platform.origin],
            cache=make_cache(target, namespace),
            expiry_margin=0.01,
            refresh_ahead=0,
        )
        made.register(Stateful(), "stateful")
        return made

    assert pipeline().for_customer("alice").get_context() is not None
    time.sleep(0.5)  # the context expired a while ago; a new process refreshes
    assert pipeline().for_customer("alice").get_context() is not None
    assert seen == [None, "rt"]


def test_waiting_for_other_processes_locks_holds_up_no_other_customer(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """Under asyncio, a customer is served while 20 others (more than the provider threads)
    all wait for locks another process holds."""
    from asapp_auth import _workers

    blocked_count = _workers.LIMIT + 4
    cache = make_cache(target, namespace)
    pipeline = pipeline_for(platform, cache, provider_timeout=60)
    blocked = [
        pipeline.for_customer(f"c{i}", Minter(platform, f"c{i}")) for i in range(blocked_count)
    ]
    names = []
    for auth in blocked:
        name = cache._name(auth.customer, pipeline._provider_id(auth.customer))  # type: ignore[arg-type]
        target.hold_lock(name, "another-process", 120)
        names.append(name)
    free = pipeline.for_customer("free", Minter(platform, "free"))
    waiting = threading.Semaphore(0)
    take = cache._locks.take

    def counted(name: str, *args: Any) -> bool:
        if name in names:
            waiting.release()  # one more blocked customer polls the other process's lock
        return take(name, *args)

    cache._locks.take = counted  # type: ignore[method-assign]

    async def run() -> None:
        tasks = [asyncio.create_task(auth.aget_context()) for auth in blocked]
        for _ in blocked:
            assert await asyncio.to_thread(waiting.acquire, True, 30)
        assert await free.aget_context() is not None
        assert not any(task.done() for task in tasks)  # all still waiting, none held it up
        for name in names:
            target.drop_lock(name)
        assert all(context is not None for context in await asyncio.gather(*tasks))

    asyncio.run(run())


def test_a_refused_context_read_again_from_redis_is_not_taken_for_a_refreshed_one(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """A request refused with 401 retries with a new context, even when another request read
    the same (refused) context again from Redis meanwhile, as a new entry of the same version."""
    minter = Minter(platform, "alice")
    pipeline = pipeline_for(platform, make_cache(target, namespace, front_ttl=0.2))
    pipeline.load("alice", minter)
    refused = pipeline.get_context().token
    platform.expire(refused)
    with httpx.Client() as client:
        flow = pipeline.sync_auth_flow(httpx.Request("GET", f"{platform.url}/v1/account"))
        sent = next(flow)
        time.sleep(0.25)  # this process's copy lapses...
        assert pipeline.get_context().token == refused  # ...and is read again from Redis
        answer = client.send(sent)
        assert answer.status_code == 401
        retry = flow.send(answer)
        assert retry.headers["Authorization"] != f"Bearer {refused}"
        assert client.send(retry).status_code == 200
    assert minter.calls == [False, True]


def test_a_refused_request_that_joins_a_mere_re_read_still_gets_a_refreshed_context(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """A fetch already in flight that only reads Redis again brings back the refused context;
    the refused request then starts a refresh instead of retrying with it (seen in the fleet
    benchmark as 'rejected again right after it was refreshed')."""
    gate = threading.Event()

    class Gated(RedisContextCache):
        def coordinate(self, customer: Any, **options: Any) -> Any:
            if not options["renew"]:
                gate.wait(5)  # the re-read is slow, so the refused request joins it
            return super().coordinate(customer, **options)

    minter = Minter(platform, "alice")
    cache = Gated(
        target.url, keys=[KEY], namespace=namespace, front_ttl=0.1, cluster=target.cluster
    )
    pipeline = pipeline_for(platform, cache)
    pipeline.load("alice", minter)
    gate.set()
    refused = pipeline.get_context().token
    gate.clear()
    platform.expire(refused)
    with httpx.Client() as client:
        flow = pipeline.sync_auth_flow(httpx.Request("GET", f"{platform.url}/v1/account"))
        sent = next(flow)
        time.sleep(0.15)  # the copy lapses; a re-read starts and is held at the gate
        reader = threading.Thread(target=pipeline.get_context)
        reader.start()
        time.sleep(0.05)
        answer = client.send(sent)
        assert answer.status_code == 401
        threading.Timer(0.2, gate.set).start()
        retry = flow.send(answer)  # joins the re-read, then refreshes
        reader.join()
        assert retry.headers["Authorization"] != f"Bearer {refused}"
        assert client.send(retry).status_code == 200
    assert minter.calls == [False, True]


def test_hosts_with_different_clocks_agree_on_expiry(
    platform: FakePlatform,
    target: Target,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Expiry is counted on Redis's clock: a host whose clock is an hour ahead still serves the
    fleet's fresh context instead of refreshing it."""
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter)
    token = a.get_context().token
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # B's host runs an hour ahead
    assert b.get_context().token == token
    assert minter.calls == [False]


def test_a_copy_older_than_a_notice_is_not_installed(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """A notice of generation 5 that arrives while this process was still reading generation 3
    keeps generation 3 out of its cache."""
    cache = make_cache(target, namespace)
    pipeline = pipeline_for(platform, cache)
    customer = pipeline.set_customer("alice", Minter(platform, "alice"))
    entry = pipeline.get_context()
    assert entry is not None
    name = cache._name(customer, pipeline._provider_id(customer))  # type: ignore[arg-type]
    cache.clear()
    cache._notice(f"{name} 5.abc".encode())
    older = CachedContext(entry, "minter", 0.0, math.inf, math.inf, version="3.def")
    cache.set(customer.cache_key, older)
    assert cache.get(customer.cache_key) is None
    newer = CachedContext(entry, "minter", 0.0, math.inf, math.inf, version="5.abc")
    cache.set(customer.cache_key, newer)
    assert cache.get(customer.cache_key) is newer


# -- what a cluster does (tested on one server too) ---------------------------------------------


def test_a_holder_that_lost_its_lock_stores_nothing_over_the_next_holder(
    platform: FakePlatform, target: Target, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A refresh whose lock was lost meanwhile (a failover to a replica that had not seen it, an
    eviction) stores nothing: the next holder's context stays, and the fleet adopts that one."""
    entered, release = threading.Event(), threading.Event()

    class Gated(Minter):
        def __call__(self, needs_refresh: bool) -> AuthContext:
            if threading.current_thread().name == "holder":
                entered.set()
                release.wait(10)
            return super().__call__(needs_refresh)

    minter = Gated(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, lock_ttl=30)
    assert a.get_context() is not None
    name = _alices_key(platform, target, namespace)
    held: list[str | None] = []
    holder = threading.Thread(
        target=lambda: held.append(a.get_context(needs_refresh=True).token), name="holder"
    )
    holder.start()
    assert entered.wait(10)
    target.drop_lock(name)  # lost while the provider runs
    newer = b.get_context(needs_refresh=True).token
    release.set()
    holder.join()
    assert held[0] not in (None, newer)
    third = pipeline_for(platform, make_cache(target, namespace))
    third.load("alice", minter)
    assert third.get_context().token == newer
    assert "lapsed before its context was stored" in caplog.text
    assert len(minter.calls) == 3


def test_scripts_a_node_lost_are_sent_to_that_node_again(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """A node without the scripts (restarted, or a replica just promoted) is sent them with
    EVAL, that node alone; sharing goes on without a refresh."""
    from asapp_auth import _redis_scripts as scripts

    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter)
    token = a.get_context().token
    raw = target.raw()
    nodes: list[Any] = raw.get_primaries() if target.cluster else [None]
    each = [raw.get_redis_connection(node) for node in nodes] if target.cluster else [raw]
    for node in each:
        node.script_flush()
    assert b.get_context().token == token
    assert minter.calls == [False]
    if target.cluster:
        loaded = [node.script_exists(scripts.READ.sha)[0] for node in each]
        assert sorted(loaded) == [False, False, True]  # the node of alice's slot only
