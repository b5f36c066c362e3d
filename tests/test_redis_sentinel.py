"""The shared cache on a primary with a replica under Redis Sentinel, given as ``client=``: shared,
through a failover to the replica with no request failed, and shared again after it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.sentinel import Sentinel
from redis_helpers import Minter

from asapp_auth import AuthPipeline
from asapp_auth._redis_servers import _answers, _command, _free_ports
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RedisServer

KEY = generate_key()
PROCESSES, THREADS = 2, 2


def _until(condition: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class Sentineled:
    """A primary, its replica and one Sentinel watching them (quorum 1) on 127.0.0.1."""

    def __init__(self) -> None:
        self.primary, self.replica = RedisServer().start(), RedisServer().start()
        self.folder = Path(tempfile.mkdtemp(prefix="asapp-auth-sentinel-"))
        self.port = _free_ports(1)[0]
        self.sentinel: subprocess.Popen[bytes] | None = None
        _command(self.replica.port, "REPLICAOF", "127.0.0.1", str(self.primary.port))
        assert _until(lambda: b"master_link_status:up" in self._info(self.replica.port))
        config = self.folder / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor fleet 127.0.0.1 {self.primary.port} 1\n"
            "sentinel down-after-milliseconds fleet 500\nsentinel failover-timeout fleet 5000\n"
        )
        quiet = subprocess.DEVNULL
        self.sentinel = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"],
            stdout=quiet,
            stderr=quiet,
        )
        assert _until(lambda: _answers(self.port))

    @staticmethod
    def _info(port: int) -> bytes:
        return bytes(_command(port, "INFO", "replication"))

    def primary_port(self) -> int:
        answer = _command(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "fleet")
        return int(answer[1])

    def client(self) -> Any:
        sentinel = Sentinel([("127.0.0.1", self.port)], socket_timeout=0.5)
        return sentinel.master_for("fleet", socket_timeout=0.5, socket_connect_timeout=0.5)

    def close(self) -> None:
        if self.sentinel is not None:
            self.sentinel.terminate()
            self.sentinel.wait(timeout=10)
        self.primary.close()
        self.replica.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def sentineled(redis_server: RedisServer) -> Iterator[Sentineled]:
    """Servers of the test's own (it kills the primary); needs redis-server as redis_server."""
    made = Sentineled()
    try:
        yield made
    finally:
        made.close()


def test_a_sentinel_failover_loses_no_request_and_the_fleet_shares_again(
    platform: FakePlatform, sentineled: Sentineled, record_property: Any
) -> None:
    """Two processes on Sentinel's primary share one context; its primary killed under load, the
    replica promoted, no request fails and a refresh after it is one for the fleet again."""
    minter = Minter(platform, "alice")
    caches = [
        RedisContextCache(
            keys=[KEY],
            namespace="sentinel",
            client=sentineled.client(),
            front_ttl=0.1,
            retry_after=0.2,
        )
        for _ in range(PROCESSES)
    ]
    pipelines = [AuthPipeline([platform.origin], cache=cache) for cache in caches]
    auths = [p.for_customer("alice", minter) for p in pipelines]
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def load(auth: Any) -> None:
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        with httpx.Client(limits=limits) as client:
            while not stop.is_set():
                try:
                    status = client.get(f"{platform.url}/v1/account", auth=auth).status_code
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                else:
                    statuses[str(status)] += 1
                    if status != 200:
                        failures.append(str(status))

    threads = [threading.Thread(target=load, args=(a,)) for a in auths for _ in range(THREADS)]
    old = sentineled.primary.port
    for thread in threads:
        thread.start()
    try:
        assert _until(lambda: sum(statuses.values()) > 20)
        assert len(minter.calls) == 1  # shared
        sentineled.primary.stop()
        assert _until(lambda: sentineled.primary_port() == sentineled.replica.port)
        assert all(cache.stats["fallbacks"] for cache in caches)  # each served alone a while
        # Each process has since been answered by the promoted replica: its outage is over.
        assert _until(lambda: not any(cache._link._outages for cache in caches))
        served = sum(statuses.values())
        assert _until(lambda: sum(statuses.values()) > served + 20)
        before = len(minter.calls)
        platform.expire(customer_id="alice")
        expired = sum(statuses.values())
        assert _until(lambda: sum(statuses.values()) > expired + 20)
        refreshed = len(minter.calls) - before
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for cache in caches:
            cache.close()
    line = (
        f"sentinel failover ({old} -> {sentineled.replica.port}): {sum(statuses.values())} "
        f"requests, {len(failures)} failed; token calls {len(minter.calls)}, of which "
        f"{refreshed} for the refresh after the failover"
    )
    print(line)
    record_property("sentinel failover", line)
    assert failures == []
    assert refreshed == 1
