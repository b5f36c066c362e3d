"""Where the shared-cache tests run (one server, or a Redis Cluster) and how they look inside.

``Target`` is what a test is given: the URL, whether it is a cluster, a raw redis-py client, and
helpers that read or write a customer's hash the way another process (or an attacker with
write access) would.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from asapp_auth import AuthContext
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.testing import FakePlatform


@dataclass
class Target:
    """A Redis deployment the shared cache runs on."""

    url: str
    cluster: bool

    def raw(self) -> Any:
        """A plain redis-py client (a cluster client for a cluster)."""
        if self.cluster:
            return RedisCluster.from_url(self.url)
        return redis.Redis.from_url(self.url)

    def cache(self, namespace: str, key: str, **options: Any) -> RedisContextCache:
        options.setdefault("keys", [key])
        return RedisContextCache(self.url, namespace=namespace, cluster=self.cluster, **options)

    def names(self, namespace: str) -> list[bytes]:
        """Every key under ``namespace``, on every shard."""
        raw = self.raw()
        if self.cluster:
            return list(raw.keys(f"{namespace}:*", target_nodes=RedisCluster.PRIMARIES))
        return list(raw.keys(f"{namespace}:*"))

    def entry(self, name: str) -> bytes | None:
        """The stored entry (``"<gen>|<sealed>"``) of a customer's key, as raw bytes."""
        value = self.raw().hget(name, "v")
        return None if value is None else bytes(value)

    def now_ms(self, name: str) -> int:
        """The time (ms) on the node that holds ``name``, the clock its deadlines count on."""
        raw = self.raw()
        node = raw.get_redis_connection(raw.get_node_from_key(name)) if self.cluster else raw
        seconds, micros = node.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def put_entry(self, name: str, value: bytes) -> None:
        """Write an entry over the customer's, with no deadline, as an attacker could."""
        self.raw().hset(name, mapping={"v": value, "vx": "0"})

    def hold_lock(self, name: str, token: str, seconds: float) -> None:
        """Take the customer's refresh lock as another process holding it would."""
        until = int(time.time() * 1000 + seconds * 1000)
        self.raw().hset(name, mapping={"l": token, "lx": str(until)})

    def drop_lock(self, name: str) -> None:
        self.raw().hdel(name, "l", "lx")

    def has_field(self, namespace: str, field: str) -> bool:
        """Whether some customer's key under ``namespace`` holds ``field`` (``v`` an entry,
        ``g`` a tombstone, ``l`` a lock)."""
        raw = self.raw()
        return any(raw.hexists(name, field) for name in self.names(namespace))


def cut_off(cache: RedisContextCache, seconds: float) -> None:
    """Make ``cache`` take Redis as down for ``seconds`` (0: reachable again)."""
    if seconds:
        cache._link._down["*"] = time.monotonic() + seconds
    else:
        cache._link._down.clear()


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
