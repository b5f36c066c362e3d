"""Redis trouble never fails a request: one server down at start, stopped and restarted under
load, and one warning per outage. (A cluster's shard down and failovers: test_redis_cluster.)"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import httpx
import pytest
from redis_helpers import Minter, Target, cut_off

from asapp_auth import AuthContext, AuthPipeline, CachedContext
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RedisServer

KEY = generate_key()


def pipeline_for(platform: FakePlatform, cache: RedisContextCache, **options: Any) -> AuthPipeline:
    return AuthPipeline([platform.origin], cache=cache, **options)


def _until(condition: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


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
        assert _until(lambda: Target(server.url, cluster=False).has_field(namespace, "v"))
    finally:
        server.close()


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


def test_a_refresh_asked_for_a_copy_this_process_already_replaced_asks_no_provider(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """With Redis (or the customer's shard) down, a refresh asked for a context that another
    thread of this process has already replaced serves the replacement: each process then makes
    one token call per rejection, as the fleet makes one with Redis up."""
    cache = target.cache(namespace, KEY, retry_after=60)
    pipeline = pipeline_for(platform, cache)
    customer = pipeline.set_customer("alice", Minter(platform, "alice"))
    old = pipeline.get_context()
    assert old is not None
    refused = pipeline.cached()
    assert refused is not None
    cut_off(cache, 60)
    replaced = pipeline.get_context(needs_refresh=True)  # one thread's refresh, alone
    assert replaced is not None
    asked: list[bool] = []

    def produce(previous: AuthContext | None, refresh: bool) -> CachedContext:
        asked.append(refresh)
        raise AssertionError("the provider was asked again")

    def adopt(context: AuthContext, plugin: str, version: str | None) -> CachedContext:
        return CachedContext(context, plugin, 0.0, math.inf, math.inf, version=version)

    # Another thread, refused with the old context, asks for a refresh of it.
    entry = cache.coordinate(
        customer,
        provider=pipeline._provider_id(customer),  # type: ignore[arg-type]
        stale=refused,
        renew=True,
        rejected=True,
        produce=produce,
        adopt=adopt,
        deadline=time.monotonic() + 5,
    )
    assert asked == []
    assert entry.context.token == replaced.token != old.token
