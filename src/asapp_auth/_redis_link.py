"""The shared cache's connection to Redis: one server, or a Redis Cluster, built on first use.

Trouble is counted per shard: on a cluster, a node that does not answer marks only the customers
whose keys it serves as down (each process then serves them alone), for ``retry_after`` seconds,
with one warning per outage; the others stay shared. On one server there is one shard. Brief
cluster states (``CLUSTERDOWN`` during a failover, ``TRYAGAIN``, a slot not covered yet) are
retried a few times within a bound before they count as an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from ._checks import redis_url_problem
from .errors import AsappAuthError, ConfigurationError

log = logging.getLogger("asapp_auth.redis_cache")

T = TypeVar("T")
_parse_url: Any = redis.connection.parse_url  # untyped in redis-py
# Cluster states that pass within moments: retried this many times, pauses growing from _PAUSE.
_BRIEF = (ClusterDownError, TryAgainError, ClusterError, RedisClusterException)
_ATTEMPTS, _PAUSE = 3, 0.05
# The whole cluster (no node reached to learn its layout), not one shard.
_ALL = "*"


class Down(Exception):
    """Redis (or the shard of a customer's key) did not answer as expected; the process carries
    on with its own copies."""


def shown_url(url: str) -> str:
    """Scheme, host, port and database: never a user name, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_url(url: object, cluster: bool) -> str:
    problem = redis_url_problem(url)
    if problem is not None or not isinstance(url, str):
        raise ConfigurationError(f"cache.url {problem}")
    if cluster and url.startswith("unix://"):
        raise ConfigurationError(
            "cache.url is a unix:// socket; Redis Cluster nodes are reached over TCP: write "
            "redis://HOST:PORT or rediss://HOST:PORT (any node of the cluster)"
        )
    if cluster and urlsplit(url).path.strip("/") not in ("", "0"):
        raise ConfigurationError(
            f"cache.url names database {urlsplit(url).path.strip('/')!r}; Redis Cluster has "
            f"database 0 only ({shown_url(url)})"
        )
    return url


class RedisLink:
    """The client (made when first needed), which shard serves a key, and which are down."""

    def __init__(
        self,
        url: str | None,
        client: Any,
        *,
        cluster: bool,
        timeout: float,
        retry_after: float,
    ) -> None:
        if not isinstance(cluster, bool):
            raise ConfigurationError(f"cache.cluster must be true or false, not {cluster!r}")
        self._timeout, self._retry_after = timeout, retry_after
        self._owns = client is None
        self._lock = threading.RLock()
        self._down: dict[str, float] = {}
        self._outages: set[str] = set()
        self.sharded = False
        if client is not None:
            given_cluster = isinstance(client, RedisCluster)
            if cluster and not given_cluster:
                raise ConfigurationError(
                    "cache.cluster is set but the given client is not a redis.cluster.RedisCluster"
                )
            self.cluster = given_cluster
            if _decodes(client):
                raise ConfigurationError(
                    "the Redis client given as cache client decodes responses; sealed entries "
                    "are bytes: give a client made without decode_responses=True"
                )
            self.shown = f"the given Redis{' Cluster' if given_cluster else ''} client"
            self._url: str | None = None
            self._client: Any = client
            if given_cluster:
                self.sharded = _has_sharded_pubsub(client)
            return
        self.cluster = cluster
        self._url = _check_url(url, cluster)
        self.shown = shown_url(self._url)
        self._client = None
        if not cluster:
            try:
                # Made now, connected on first command: one try, so that a request that finds
                # Redis down goes on without it at once.
                self._client = redis.Redis.from_url(
                    self._url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=30,
                )
            except ValueError:
                raise ConfigurationError(
                    f"cache.url is not a Redis URL redis-py can use ({self.shown})"
                ) from None
        else:
            try:
                _parse_url(self._url)
            except ValueError:
                raise ConfigurationError(
                    f"cache.url is not a Redis URL redis-py can use ({self.shown})"
                ) from None

    def client(self) -> Any:
        """The client; a cluster's is made (which connects) on first use. Raises ``Down``."""
        found = self._client
        if found is not None:
            return found
        with self._lock:
            if self._client is None:
                if time.monotonic() < self._down.get(_ALL, 0.0):
                    raise Down("no cluster node answered")
                try:
                    cluster: Any = RedisCluster
                    made = cluster.from_url(
                        self._url,
                        socket_timeout=self._timeout,
                        socket_connect_timeout=self._timeout,
                        # Our own bounded retries (call): redis-py's would wait on a dead shard.
                        retry=Retry(NoBackoff(), 0),
                        require_full_coverage=False,
                        health_check_interval=30,
                    )
                    self.sharded = _has_sharded_pubsub(made)
                except Exception as exc:  # no node reached: the whole cluster is down for us
                    self._fell_back(_ALL, exc)
                    raise Down(type(exc).__name__) from exc
                self._client = made
                self._answered(_ALL)
            return self._client

    def shard(self, key: str) -> str:
        """The shard that serves ``key``: ``""`` on one server; a node's name on a cluster."""
        if not self.cluster:
            return ""
        client = self._client
        if client is None:
            return _ALL
        try:
            return str(client.get_node_from_key(key).name)
        except Exception:  # a slot not covered right now: counted apart
            return f"slot {client.keyslot(key)}"

    def up(self, key: str) -> bool:
        now, down = time.monotonic(), self._down
        if not down:
            return True
        return now >= down.get(_ALL, 0.0) and now >= down.get(self.shard(key), 0.0)

    def call(self, key: str, what: Callable[[Any], T]) -> T:
        """``what(client)`` for ``key``'s shard; any failure of the client marks that shard down
        and raises ``Down``. Brief cluster states are retried within a bound first."""
        client = self.client()
        shard = self.shard(key)
        pause = _PAUSE
        for attempt in range(_ATTEMPTS):
            try:
                result = what(client)
            except AsappAuthError:
                raise
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # redis-py read the cluster's layout again: a failover may have moved the slot.
                moved = self.cluster and self.shard(key) != shard
                if not moved or attempt == _ATTEMPTS - 1:
                    self._fell_back(shard, exc)
                    raise Down(type(exc).__name__) from exc
            except _BRIEF as exc:
                if not self.cluster or attempt == _ATTEMPTS - 1:
                    self._fell_back(shard, exc)
                    raise Down(type(exc).__name__) from exc
                time.sleep(pause)
                pause *= 2
            except Exception as exc:  # any failure of the client is Redis trouble, not ours
                self._fell_back(shard, exc)
                raise Down(type(exc).__name__) from exc
            else:
                if self._outages:
                    self._answered(shard)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def refresh(self) -> None:
        """Read the cluster's layout again (after a slot moved or a node failed)."""
        client = self._client
        if self.cluster and client is not None:
            client.nodes_manager.initialize()

    def _fell_back(self, shard: str, exc: BaseException) -> None:
        log.debug("Redis trouble on %s: %s: %s", shard or self.shown, type(exc).__name__, exc)
        with self._lock:
            first = shard not in self._outages
            self._outages.add(shard)
            self._down[shard] = time.monotonic() + self._retry_after
        if not first:
            return
        if not self.cluster:
            where = f"Redis at {self.shown}"
            whose = "each process serves from its own cache and asks its providers itself"
        elif shard == _ALL:
            where = f"no node of the Redis Cluster at {self.shown}"
            whose = "each process serves from its own cache and asks its providers itself"
        else:
            where = f"Redis Cluster node {shard}"
            whose = "the customers it serves are served by each process alone"
        if isinstance(exc, ResponseError) and not isinstance(exc, _BRIEF):
            # It answered, refusing: a service that forbids scripts (or ACLs) cannot host it.
            log.warning(
                "%s refused a command of the shared cache (%s), which runs its scripts there "
                "(EVALSHA and EVAL, on one key each) and publishes notices; %s meanwhile (tried "
                "again every %gs)",
                where,
                type(exc).__name__,
                whose,
                self._retry_after,
            )
            return
        log.warning(
            "%s did not answer (%s); %s until it is back (tried again every %gs)",
            where,
            type(exc).__name__ if not isinstance(exc, Down) else exc,
            whose,
            self._retry_after,
        )

    def _answered(self, shard: str) -> None:
        with self._lock:
            back = shard in self._outages
            self._outages.discard(shard)
            self._down.pop(shard, None)
        if not back:
            return
        where = (
            f"Redis at {self.shown}"
            if not self.cluster
            else f"the Redis Cluster at {self.shown}"
            if shard == _ALL
            else f"Redis Cluster node {shard}"
        )
        log.warning("%s answers again; contexts are shared again", where)

    def is_down(self) -> bool:
        """Whether any shard is counted down now."""
        now = time.monotonic()
        return any(now < until for until in self._down.values())

    def close(self) -> None:
        client = self._client
        if self._owns and client is not None:
            client.close()


def _decodes(client: Any) -> bool:
    if isinstance(client, RedisCluster):
        return bool(client.encoder.decode_responses)
    pool = getattr(client, "connection_pool", None)
    return pool is not None and bool(pool.connection_kwargs.get("decode_responses"))


def _has_sharded_pubsub(client: Any) -> bool:
    """Whether the cluster's nodes know ``SPUBLISH`` (Redis and Valkey 7.0 and later)."""
    try:
        node = client.get_random_node()
        found = client.get_redis_connection(node).execute_command("COMMAND", "INFO", "SPUBLISH")
    except Exception:  # COMMAND refused (some managed services): classic notices work anywhere
        return False
    # redis-py answers a dict of the commands the node knows (a list where no parser applies).
    if isinstance(found, dict):
        return bool(found)
    return isinstance(found, list) and bool(found) and found[0] is not None
