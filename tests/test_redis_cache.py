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
import redis

from asapp_auth import AuthContext, AuthPipeline, CachedContext
from asapp_auth.errors import ConfigurationError
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import KeyRing, generate_key
from asapp_auth.testing import Exchange, FakePlatform, RedisServer

WORKER = Path(__file__).with_name("fleet_worker.py")
KEY = generate_key()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    return f"t{abs(hash(request.node.nodeid)) % 10**9}-{time.monotonic_ns()}"


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


def make_cache(server: RedisServer, namespace: str, **options: Any) -> RedisContextCache:
    options.setdefault("keys", [KEY])
    return RedisContextCache(server.url, namespace=namespace, **options)


class Minter:
    """A provider that mints platform tokens and counts its calls; shared under ``cache_scope``."""

    cache_scope = "minter"

    def __init__(self, platform: FakePlatform, customer: str, lifetime: float = 300.0) -> None:
        self.platform, self.customer, self.lifetime = platform, customer, lifetime
        self.calls: list[bool] = []
        self.previous: list[AuthContext | None] = []
        self.delay = 0.0
        self.lock = threading.Lock()

    def __call__(self, needs_refresh: bool) -> AuthContext:
        with self.lock:
            self.calls.append(needs_refresh)
        time.sleep(self.delay)
        return self.platform.context_for(self.customer, self.lifetime)


def pipeline_for(platform: FakePlatform, cache: RedisContextCache, **options: Any) -> AuthPipeline:
    return AuthPipeline([platform.origin], cache=cache, **options)


def two_processes(
    platform: FakePlatform, server: RedisServer, namespace: str, minter: Minter, **cache: Any
) -> tuple[AuthPipeline, AuthPipeline]:
    """Two pipelines with caches of their own on one Redis namespace, as two processes have,
    both serving alice with ``minter``."""
    pipelines = []
    for _ in range(2):
        pipeline = pipeline_for(platform, make_cache(server, namespace, **cache))
        pipeline.load("alice", minter)
        pipelines.append(pipeline)
    return pipelines[0], pipelines[1]


# -- sealing ------------------------------------------------------------------------------------


def test_a_sealed_value_opens_only_with_its_binding_and_a_key_of_the_ring() -> None:
    old, new = generate_key(), generate_key()
    sealed = KeyRing([old]).seal(b"s3cr3t context", b"ns:alice")
    assert b"s3cr3t" not in sealed
    rotated = KeyRing([new, old])
    assert rotated.open(sealed, b"ns:alice") == b"s3cr3t context"
    assert rotated.open(rotated.seal(b"x", b"b"), b"b") == b"x"
    from asapp_auth.sealing import UnsealError

    with pytest.raises(UnsealError, match="stored elsewhere"):
        rotated.open(sealed, b"ns:bob")
    with pytest.raises(UnsealError, match="not in this ring"):
        KeyRing([new]).open(sealed, b"ns:alice")
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(UnsealError):
        rotated.open(bytes(tampered), b"ns:alice")
    with pytest.raises(UnsealError):
        rotated.open(b"short", b"ns:alice")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "at least one key"),
        (["not-a-key"], "32-byte key"),
        ([b"short"], "32 bytes"),
        (["env:ASAPP_AUTH_TEST_MISSING_KEY"], "ASAPP_AUTH_TEST_MISSING_KEY"),
        ([KEY, KEY], "same key twice"),
    ],
)
def test_bad_keys_fail_at_configuration(keys: list[Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        KeyRing(keys)
    assert KEY not in str(caught.value)


def test_keys_come_from_env_and_file_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = generate_key(), bytes(range(32)).hex()
    monkeypatch.setenv("CACHE_KEY", first)
    (tmp_path / "key").write_text(second + "\n")
    ring = KeyRing(["env:CACHE_KEY", f"file:{tmp_path / 'key'}"])
    assert len(ring) == 2
    assert first not in repr(ring)
    hex_ring = KeyRing([f"file:{tmp_path / 'key'}"])
    assert KeyRing([bytes(range(32))]).open(hex_ring.seal(b"v", b"k"), b"k") == b"v"
    assert ring.open(hex_ring.seal(b"v", b"k"), b"k") == b"v"  # the second key opens too


# -- sharing between processes ------------------------------------------------------------------


def test_a_context_fetched_by_one_process_serves_another(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    first = pipeline_for(platform, make_cache(redis_server, namespace))
    second = pipeline_for(platform, make_cache(redis_server, namespace))
    first.load("alice", minter)
    second.load("alice", minter)
    token = first.get_context().token
    assert second.get_context().token == token
    assert minter.calls == [False]
    with httpx.Client(auth=second) as client:
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "alice"}
    # Stored sealed: neither the token nor the customer id is readable in Redis.
    raw = redis.Redis.from_url(redis_server.url)
    values = [raw.get(key) for key in raw.keys(f"{namespace}:*")]
    assert values
    assert all(token.encode() not in v and b"alice" not in v for v in values if v)


def test_other_namespaces_and_other_scopes_do_not_share(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a = pipeline_for(platform, make_cache(redis_server, namespace))
    b = pipeline_for(platform, make_cache(redis_server, namespace + "-other"))
    a.load("alice", minter)
    b.load("alice", minter)
    assert a.get_context().token != b.get_context().token
    other = Minter(platform, "alice")
    other.cache_scope = "another-tenant"
    c = pipeline_for(platform, make_cache(redis_server, namespace))
    c.load("alice", other)
    assert c.get_context().token != a.get_context().token


def test_providers_without_a_scope_are_never_shared(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    """Two tenants' closures made by one factory look alike across processes: not shared."""

    def provider_for(tenant: str) -> Any:
        def provider(customer_id: str, needs_refresh: bool) -> AuthContext:
            return platform.context_for(f"{tenant}-{customer_id}")

        return provider

    pipeline = pipeline_for(platform, make_cache(redis_server, namespace))
    first = pipeline.for_customer("42", provider_for("tenant-a")).get_context()
    second = pipeline.for_customer("42", provider_for("tenant-b")).get_context()
    assert first is not None
    assert second is not None
    assert platform.customer_of(first.token) == "tenant-a-42"
    assert platform.customer_of(second.token) == "tenant-b-42"
    assert redis.Redis.from_url(redis_server.url).keys(f"{namespace}:*") == []


def test_plugins_share_by_name_settings_and_origins(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    from asapp_auth.hookspecs import hookimpl

    class Tenant:
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        @hookimpl
        def provide_context(self, customer: Any) -> AuthContext:
            return platform.context_for(f"{self.tenant}-{customer.id}")

    def token(tenant: str, name: str | None, origins: list[str]) -> str | None:
        pipeline = AuthPipeline(origins, cache=make_cache(redis_server, namespace))
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
    server: RedisServer,
    namespace: str,
    *,
    workers: int,
    callers: int,
    mode: str,
) -> list[dict[str, Any]]:
    start_at = time.time() + 2.0
    options = {
        "redis": server.url,
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


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_a_fleet_refreshes_a_rejected_context_once(
    platform: FakePlatform,
    redis_server: RedisServer,
    namespace: str,
    minting: list[str],
    mode: str,
) -> None:
    """4 processes x 50 concurrent requests on a context the platform has expired: 1 refresh."""
    seeder = pipeline_for(platform, make_cache(redis_server, namespace))
    seeder.load("alice", Minter(platform, "alice"))
    stale = seeder.get_context().token
    platform.expire(stale)
    results = _run_fleet(platform, redis_server, namespace, workers=4, callers=50, mode=mode)
    assert [r["errors"] for r in results] == [[]] * 4
    assert [r["statuses"] for r in results] == [{"200": 50}] * 4
    assert len(minting) == 1, f"{len(minting)} token calls for the fleet"
    assert sum(len(r["asked"]) for r in results) == 1
    assert seeder.get_context(needs_refresh=False).token in (stale, minting[0])


def test_a_fleet_starting_cold_makes_one_token_call(
    platform: FakePlatform, redis_server: RedisServer, namespace: str, minting: list[str]
) -> None:
    results = _run_fleet(platform, redis_server, namespace, workers=4, callers=50, mode="threads")
    assert [r["statuses"] for r in results] == [{"200": 50}] * 4
    assert len(minting) == 1


def test_a_lock_holder_killed_mid_refresh_is_taken_over_within_the_lock_lifetime(
    platform: FakePlatform, redis_server: RedisServer, namespace: str, minting: list[str]
) -> None:
    options = {
        "redis": redis_server.url,
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
        killed_at = time.monotonic()
        holder.kill()
    finally:
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    minter = Minter(platform, "alice")
    survivor = pipeline_for(
        platform, make_cache(redis_server, namespace, lock_ttl=1.5), provider_timeout=10
    )
    survivor.load("alice", minter)
    assert survivor.get_context().token
    took_over = time.monotonic() - killed_at
    assert took_over < 1.5 + 0.5, f"took over after {took_over:.2f}s"
    assert minter.calls == [False]


def test_a_waiter_gives_up_at_the_provider_timeout_and_caches_nothing(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    cache = make_cache(redis_server, namespace, lock_ttl=30)
    pipeline = pipeline_for(platform, cache, provider_timeout=0.3)
    minter = Minter(platform, "alice")
    pipeline.load("alice", minter)
    name = cache._name(pipeline.customer, pipeline._provider_id(pipeline.customer))  # type: ignore[arg-type]
    raw.set(f"{name}:lock", "someone-else", px=30_000)
    from asapp_auth.errors import ProviderTimeoutError

    with pytest.raises(ProviderTimeoutError, match="kept refreshing") as caught:
        pipeline.get_context()
    assert caught.value.customer_id == "alice"
    assert minter.calls == []
    raw.delete(f"{name}:lock")
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
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, redis_server, namespace, minter, front_ttl=600)
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


def test_clearing_a_customer_drops_its_context_for_the_fleet(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, redis_server, namespace, minter, front_ttl=600)
    old = a.get_context().token
    assert b.get_context().token == old
    a.clear()
    assert _until(lambda: b.cached() is None)
    assert b.get_context().token != old
    assert minter.calls == [False, False]


def test_a_copy_expires_after_front_ttl_and_is_read_again_not_refreshed(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    cache = make_cache(redis_server, namespace, front_ttl=0.1)
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
    redis_server: RedisServer,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    alice, bob = Minter(platform, "alice"), Minter(platform, "bob")
    first = pipeline_for(platform, make_cache(redis_server, namespace))
    first.load("alice", alice)
    alice_token = first.get_context().token
    cache = make_cache(redis_server, namespace)
    reader = pipeline_for(platform, cache)
    customer = reader.set_customer("alice", alice)
    name = cache._name(customer, reader._provider_id(customer))
    key = f"{name}:ctx"
    sealed = raw.get(key)
    assert sealed is not None

    def read_fresh(pipeline: AuthPipeline) -> str | None:
        cache.clear()
        return pipeline.get_context().token

    caplog.set_level(logging.WARNING, "asapp_auth")
    raw.set(key, sealed[:-1] + bytes([sealed[-1] ^ 1]))  # tampered
    assert read_fresh(reader) not in (None, alice_token)
    foreign = RedisContextCache(redis_server.url, keys=[generate_key()], namespace=namespace)
    other = pipeline_for(platform, foreign)
    other.load("alice", alice)
    foreign.clear()
    raw.delete(key)
    other.get_context()  # alice's entry, sealed with a key the others do not have
    assert read_fresh(reader) != other.get_context().token
    # Alice's entry copied under Bob's name is not Bob's context.
    alices = raw.get(key)
    assert alices is not None
    bob_customer = reader.set_customer("bob", bob)  # (which drops Alice's entry from Redis)
    raw.set(f"{cache._name(bob_customer, reader._provider_id(bob_customer))}:ctx", alices)
    assert platform.customer_of(read_fresh(reader)) == "bob"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Each cache warns once a minute at most, whatever the number of bad entries.
    assert 1 <= len([w for w in warnings if "could not be used" in w]) <= 2
    assert alice_token not in caplog.text


def _alices_key(platform: FakePlatform, server: RedisServer, namespace: str) -> str:
    cache = make_cache(server, namespace)
    pipeline = pipeline_for(platform, cache)
    customer = pipeline.set_customer("alice", Minter(platform, "alice"))
    return f"{cache._name(customer, pipeline._provider_id(customer))}:ctx"  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", [b"1" + b"0" * 30, b"9" * 15])
def test_an_entry_with_a_huge_generation_is_replaced_and_sharing_resumes(
    platform: FakePlatform,
    redis_server: RedisServer,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    prefix: bytes,
) -> None:
    """A tampered entry whose generation is out of range (or in range but unreadable) is
    refused with a warning and replaced under the lock: the next process adopts the new one."""
    raw = redis.Redis.from_url(redis_server.url)
    minter = Minter(platform, "alice")
    first = pipeline_for(platform, make_cache(redis_server, namespace))
    first.load("alice", minter)
    assert first.get_context() is not None
    key = _alices_key(platform, redis_server, namespace)
    raw.set(key, prefix + b"|not-a-sealed-value", px=86_400_000)
    caplog.set_level(logging.WARNING, "asapp_auth")
    b, c = two_processes(platform, redis_server, namespace, minter)
    token = b.get_context().token
    assert c.get_context().token == token
    assert len(minter.calls) == 2  # the first process, then one refresh for B and C
    stored = raw.get(key)
    assert stored is not None
    assert int(stored.partition(b"|")[0]) < 10**15
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("replaced" in w for w in warnings)
    if len(prefix) > 15:
        assert any("out of range" in w and "alice" not in w for w in warnings)


def test_a_good_copy_replaces_a_tampered_entry_without_asking_the_provider(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    """A process whose copy is still good, finding a generation of 10**30 in Redis, stores its
    copy over it under the lock; another process then adopts that copy."""
    raw = redis.Redis.from_url(redis_server.url)
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, redis_server, namespace, minter)
    token = a.get_context().token
    key = _alices_key(platform, redis_server, namespace)
    raw.set(key, b"1" + b"0" * 30 + b"|junk", px=86_400_000)
    copy = a.cached()
    assert copy is not None
    copy.expires_at = 0.0  # A's copy lapses in front (it is still valid): A reads Redis again
    assert a.get_context().token == token
    assert b.get_context().token == token
    assert minter.calls == [False]


# -- Redis trouble ------------------------------------------------------------------------------


def test_redis_down_at_start_serves_from_the_process_and_warns_once(
    platform: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer()  # not started: nothing listens on its port
    cache = RedisContextCache(server.url, keys=[KEY], namespace="down", retry_after=60)
    pipeline = pipeline_for(platform, cache)
    minter = Minter(platform, "alice")
    pipeline.load("alice", minter)
    with httpx.Client(auth=pipeline) as client:
        for _ in range(5):
            assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert minter.calls == [False]
    assert [r.getMessage() for r in caplog.records].count(
        next(r.getMessage() for r in caplog.records if "did not answer" in r.getMessage())
    ) == 1


def test_redis_stopped_and_restarted_mid_load_loses_no_request(
    platform: FakePlatform, namespace: str, redis_server: RedisServer
) -> None:
    server = RedisServer().start()  # a server of its own to stop: redis_server is shared
    try:
        cache = RedisContextCache(
            server.url, keys=[KEY], namespace=namespace, front_ttl=0.05, retry_after=0.2
        )
        minter = Minter(platform, "alice", lifetime=1.0)
        pipeline = pipeline_for(platform, cache, expiry_margin=0.1, refresh_ahead=0.3)
        pipeline.load("alice", minter)
        failures: list[str] = []
        done = threading.Event()
        counts = [0]

        def load() -> None:
            with httpx.Client(auth=pipeline) as client:
                while not done.is_set():
                    try:
                        status = client.get(f"{platform.url}/v1/account").status_code
                    except Exception as exc:
                        failures.append(type(exc).__name__)
                    else:
                        counts[0] += 1
                        if status != 200:
                            failures.append(str(status))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        server.stop()
        time.sleep(1.5)  # past a token expiry: refreshed without Redis
        server.start()
        time.sleep(1.5)
        done.set()
        for thread in threads:
            thread.join()
        assert failures == []
        assert counts[0] > 50
        assert cache.stats["fallbacks"] >= 1
        # Back in shared mode: the context is in Redis again.
        assert _until(lambda: redis.Redis.from_url(server.url).keys(f"{namespace}:*:ctx"))
    finally:
        server.close()


# -- asyncio ------------------------------------------------------------------------------------


def test_many_tasks_on_two_processes_share_one_fetch_and_survive_cancellation(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    minter.delay = 0.2
    a, b = two_processes(platform, redis_server, namespace, minter)

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
    platform: FakePlatform, redis_server: RedisServer, namespace: str
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
            make_cache(redis_server, namespace, front_ttl=0.05),
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


# -- configuration ------------------------------------------------------------------------------


def test_a_redis_cache_from_the_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, namespace: str
) -> None:
    monkeypatch.setenv("ASAPP_AUTH_CACHE_KEY", KEY)
    config = tmp_path / "asapp-auth.toml"
    config.write_text(
        'origins = ["https://api.chat.example"]\n'
        "[cache]\n"
        'backend = "redis"\n'
        f'url = "{redis_server.url}"\n'
        f'namespace = "{namespace}"\n'
        'keys = ["env:ASAPP_AUTH_CACHE_KEY"]\n'
        "front_ttl = 2\n"
        "lock_ttl = 20\n"
    )
    pipeline = AuthPipeline.from_config(config)
    assert isinstance(pipeline._cache, RedisContextCache)
    assert "front_ttl=2" in repr(pipeline._cache)


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (['backend = "redis"', 'keys = ["env:K"]'], "cache.url: required"),
        (['backend = "redis"', 'url = "redis://127.0.0.1:1"'], "cache.keys: required"),
        (['backend = "memcached"'], 'cache.backend: expected "memory" or "redis"'),
        (['url = "redis://127.0.0.1:1"'], 'only with backend = "redis"'),
        (
            ['backend = "redis"', 'url = "redis://127.0.0.1:1"', 'keys = ["env:NOPE_NOT_SET"]'],
            "NOPE_NOT_SET",
        ),
        (
            ['backend = "redis"', 'url = "redis://127.0.0.1:1"', 'keys = "k"'],
            "cache.keys: expected a list",
        ),
        (['backend = "redis"', 'url = "http://x"', 'keys = ["env:K"]'], "redis://"),
    ],
)
def test_redis_cache_settings_are_checked_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], problem: str
) -> None:
    monkeypatch.setenv("K", KEY)
    config = tmp_path / "asapp-auth.toml"
    config.write_text('origins = ["https://api.chat.example"]\n[cache]\n' + "\n".join(lines))
    with pytest.raises(ConfigurationError, match=problem) as caught:
        AuthPipeline.from_config(config)
    assert str(config) in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://user:s3cr3t-pass@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=s3cr3t"]
)
def test_the_url_password_is_never_shown(url: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisContextCache(url, keys=[KEY], namespace="shown", retry_after=60)
    assert repr(cache) == "RedisContextCache(redis://127.0.0.1:1/0, namespace='shown', " + (
        "front_ttl=5, entries=0)"
    )
    with FakePlatform() as platform:
        pipeline = pipeline_for(platform, cache)
        pipeline.load("alice", Minter(platform, "alice"))
        assert pipeline.get_context() is not None  # Redis is down: served alone
    assert "did not answer" in caplog.text
    assert "s3cr3t" not in caplog.text
    with pytest.raises(ConfigurationError) as caught:
        RedisContextCache("redis:/user:s3cr3t@host", keys=[KEY])
    assert "s3cr3t" not in str(caught.value)


def test_a_client_that_decodes_responses_is_refused() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisContextCache(keys=[KEY], client=client)


# -- what the review found ----------------------------------------------------------------------


def test_the_lock_is_kept_while_a_slow_provider_runs(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    """A provider slower than lock_ttl keeps the lock: the other process waits, never refreshes."""
    minter = Minter(platform, "alice")
    minter.delay = 1.0
    a, b = two_processes(platform, redis_server, namespace, minter, lock_ttl=0.3)
    first = threading.Thread(target=a.get_context)
    first.start()
    time.sleep(0.2)
    token = b.get_context().token
    first.join()
    assert minter.calls == [False]
    assert a.get_context().token == token


def test_a_customer_cleared_during_a_refresh_does_not_come_back(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, redis_server, namespace, minter)
    old = a.get_context().token
    minter.delay = 0.5
    refreshing = threading.Thread(target=a.get_context, kwargs={"needs_refresh": True})
    refreshing.start()
    time.sleep(0.1)
    b.clear()  # the customer logged out while A was refreshing
    refreshing.join()
    assert _until(lambda: redis.Redis.from_url(redis_server.url).keys(f"{namespace}:*:gone"))
    third = pipeline_for(platform, make_cache(redis_server, namespace))
    late = Minter(platform, "alice")
    third.load("alice", late)
    assert third.get_context().token != old
    assert late.calls == [False]  # nothing of the cleared customer was served


def test_a_rejected_context_is_not_served_again_when_its_refresh_failed(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a = pipeline_for(platform, make_cache(redis_server, namespace))
    a.load("alice", minter)
    revoked = a.get_context().token
    platform.expire(revoked)

    def failing(needs_refresh: bool) -> AuthContext:
        raise RuntimeError("the token service is down")

    failing.cache_scope = "minter"  # type: ignore[attr-defined]
    b = pipeline_for(platform, make_cache(redis_server, namespace))
    b.load("alice", failing)
    from asapp_auth.errors import ProviderError

    with httpx.Client(auth=b) as client, pytest.raises(ProviderError):
        client.get(f"{platform.url}/v1/account")
    c = pipeline_for(platform, make_cache(redis_server, namespace))
    fresh = Minter(platform, "alice")
    c.load("alice", fresh)
    with httpx.Client(auth=c) as client:
        assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert fresh.calls == [True]  # asked for a fresh one: the refused one was not served
    sent = [r.headers.get("authorization") for r in platform.requests_to("/v1/account")]
    assert sent.count(f"Bearer {revoked}") == 1  # B's one request; C never sent it


def test_a_forced_refresh_produces_even_without_a_local_copy(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, redis_server, namespace, minter)
    old = a.get_context().token
    assert b.get_context(needs_refresh=True).token != old
    assert minter.calls == [False, True]


def test_a_context_refreshed_while_redis_was_away_wins_when_it_is_back(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    minter = Minter(platform, "alice")
    a_cache = make_cache(redis_server, namespace, front_ttl=0.05)
    a = pipeline_for(platform, a_cache)
    b = pipeline_for(platform, make_cache(redis_server, namespace, front_ttl=0.05))
    a.load("alice", minter)
    b.load("alice", minter)
    old = a.get_context().token
    a_cache._down_until = time.monotonic() + 60  # A is cut off from Redis
    newer = a.get_context(needs_refresh=True).token
    assert newer != old
    a_cache._down_until = 0.0  # and reaches it again
    time.sleep(0.06)
    assert a.get_context().token == newer  # A does not go back to the older one in Redis
    time.sleep(0.06)
    assert b.get_context().token == newer  # and shared it
    assert minter.calls == [False, True]


def test_the_state_outlives_the_context_for_the_next_refresh(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
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
            cache=make_cache(redis_server, namespace),
            expiry_margin=0.01,
            refresh_ahead=0,
        )
        made.register(Stateful(), "stateful")
        return made

    assert pipeline().for_customer("alice").get_context() is not None
    time.sleep(0.5)  # the context expired a while ago; a new process refreshes
    assert pipeline().for_customer("alice").get_context() is not None
    assert seen == [None, "rt"]


def test_keygen_makes_keys_the_ring_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asapp_auth.cli import main

    assert main(["keygen"]) == 0
    printed = capsys.readouterr().out.strip()
    assert len(KeyRing([printed])) == 1
    out = tmp_path / "cache.key"
    assert main(["keygen", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.stat().st_mode & 0o777 == 0o600
    key = out.read_text().strip()
    assert key not in said
    assert len(KeyRing([f"file:{out}"])) == 1
    assert main(["keygen", "--out", str(out)]) == 2  # never overwrites a key


def test_waiting_for_other_processes_locks_holds_up_no_other_customer(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    """20 customers whose locks another process holds do not delay a 21st under asyncio."""
    raw = redis.Redis.from_url(redis_server.url)
    cache = make_cache(redis_server, namespace)
    pipeline = pipeline_for(platform, cache, provider_timeout=1.0)
    blocked = [pipeline.for_customer(f"c{i}", Minter(platform, f"c{i}")) for i in range(20)]
    for auth in blocked:
        name = cache._name(auth.customer, pipeline._provider_id(auth.customer))  # type: ignore[arg-type]
        raw.set(f"{name}:lock", "another-process", px=10_000)
    free = pipeline.for_customer("free", Minter(platform, "free"))

    async def run() -> float:
        waiting = [asyncio.create_task(auth.aget_context()) for auth in blocked]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        assert await free.aget_context() is not None
        took = time.monotonic() - started
        await asyncio.gather(*waiting, return_exceptions=True)
        return took

    assert asyncio.run(run()) < 0.5


def test_an_outage_warns_once_and_its_end_once(
    platform: FakePlatform,
    namespace: str,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer().start()
    try:
        cache = RedisContextCache(
            server.url, keys=[KEY], namespace=namespace, front_ttl=0.01, retry_after=0.05
        )
        pipeline = pipeline_for(platform, cache)
        pipeline.load("alice", Minter(platform, "alice"))
        assert pipeline.get_context() is not None
        server.stop()
        for _ in range(10):
            assert pipeline.get_context() is not None
            time.sleep(0.06)
        server.start()
        time.sleep(0.06)
        for _ in range(3):
            assert pipeline.get_context() is not None
            time.sleep(0.02)
        messages = [r.getMessage() for r in caplog.records]
        assert sum("did not answer" in m for m in messages) == 1
        assert sum("answers again" in m for m in messages) == 1
        cache.close()
    finally:
        server.close()


def test_a_refused_context_read_again_from_redis_is_not_taken_for_a_refreshed_one(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    """A request refused with 401 retries with a new context, even when another request read
    the same (refused) context again from Redis meanwhile, as a new entry of the same version."""
    minter = Minter(platform, "alice")
    pipeline = pipeline_for(platform, make_cache(redis_server, namespace, front_ttl=0.2))
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
    platform: FakePlatform, redis_server: RedisServer, namespace: str
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
    cache = Gated(redis_server.url, keys=[KEY], namespace=namespace, front_ttl=0.1)
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
    redis_server: RedisServer,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Expiry is counted on Redis's clock: a host whose clock is an hour ahead still serves the
    fleet's fresh context instead of refreshing it."""
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, redis_server, namespace, minter)
    token = a.get_context().token
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # B's host runs an hour ahead
    assert b.get_context().token == token
    assert minter.calls == [False]


def test_a_copy_older_than_a_notice_is_not_installed(
    platform: FakePlatform, redis_server: RedisServer, namespace: str
) -> None:
    """A notice of generation 5 that arrives while this process was still reading generation 3
    keeps generation 3 out of its cache."""
    cache = make_cache(redis_server, namespace)
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
