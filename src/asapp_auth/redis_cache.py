"""``RedisContextCache``: contexts shared by every process pointed at one Redis and namespace.

Each process keeps a short-lived copy of a context in front (``front_ttl`` seconds), so a cached
request never waits for Redis. When a copy is missing or stale, the pipeline calls
``coordinate`` (in the request's thread, or a worker thread under asyncio; never on an event
loop), which reads Redis and, only when the fleet has no fresh context either, takes the
customer's refresh lock (renewed while the provider runs, so a crashed holder blocks nobody for
longer than ``lock_ttl``), reads again, asks the providers from the newest context the fleet has
(its ``state``: a rotated refresh token), and stores the result in a script that writes only
while the lock is its own, only over an older generation, and never over a customer cleared
meanwhile. Other processes wait for the lock, bounded by the provider timeout, and read what the
holder stored. Every store publishes the new version; every process drops its copy of an older
one.

A customer's entry, lock and tombstone are one Redis hash (``asapp_auth._redis_keys``), touched
by scripts only (``asapp_auth._redis_scripts``), so it runs unchanged on Redis Cluster
(``cluster=True``): each script runs on the one node that serves the customer's slot, on that
node's clock, and follows the slot through resharding and failover. Entries carry a generation,
in clear ahead of the sealed value and bound to it (``asapp_auth._redis_entries``): no process
goes back to an older context than one it has, and a holder that lost its lock (a failover)
cannot store over a newer one. Entries outlive their context by ``state_ttl`` so that its state
is still there for the next refresh after a quiet period.

Redis (or a cluster's shard) down never fails a request: the process serves its own copy,
asks its providers itself when it must, warns once, and tries again after ``retry_after``
seconds (``asapp_auth._redis_link``). Needs the ``redis`` extra (redis-py and cryptography;
from a checkout, ``pip install '.[redis]'``).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from . import _telemetry
from ._checks import seconds
from ._hints import extra_hint
from .cache import CachedContext, MemoryContextCache
from .context import AuthContext
from .customer import Customer
from .errors import ConfigurationError, InvalidContextError
from .logids import logged
from .sealing import KeyRing

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigurationError(f"the Redis cache needs redis-py: {extra_hint('redis')}") from exc

from . import _redis_scripts as scripts
from ._redis_entries import Clock, Entries, Found
from ._redis_forgets import Forgets
from ._redis_keys import check_namespace, gen_of, name_of
from ._redis_link import Down, RedisLink
from ._redis_lock import FleetLock
from ._redis_notices import Notices

__all__ = ["RedisContextCache"]

log = logging.getLogger("asapp_auth.redis_cache")

_WARN_EVERY = 60.0


def seen(found: Found | None) -> int:
    """The generation prefix last read (-1: none), against which a newer store is told."""
    return -1 if found is None else found.gen


class RedisContextCache(MemoryContextCache):
    """A context cache shared through Redis, with an in-process copy in front.

    :param url: ``redis://host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket); with
        ``cluster=True``, the URL of any node of the cluster (database 0); or give ``client``.
    :param keys: the keys that seal entries, newest first (see ``asapp_auth.sealing.KeyRing``):
        32-byte keys, or ``env:NAME`` / ``file:PATH`` references to them.
    :param namespace: processes share entries only within one namespace.
    :param cluster: ``url`` is a node of a Redis Cluster (or a cluster-mode managed service):
        the client finds the other nodes, connecting on first use.
    :param front_ttl: seconds a process serves its own copy before reading Redis again (the
        longest another process's refresh can go unseen if its notice is lost).
    :param lock_ttl: the refresh lock's lifetime, renewed while its holder's provider runs: how
        long a crashed holder can keep the fleet waiting. Keep it below ``provider_timeout``.
    :param state_ttl: seconds an entry is kept past its context's expiry, for its state (a
        refresh token) to seed the next refresh.
    :param timeout: seconds a Redis command may take before Redis counts as down.
    :param retry_after: seconds before Redis (or a cluster's shard) is tried again once it was
        found down.
    :param maxsize: entries kept in front, as ``MemoryContextCache``.
    :param client: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` to use instead of ``url``
        (bytes responses: no ``decode_responses``). It stays the caller's to close.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        keys: Iterable[bytes | str] | str,
        namespace: str = "asapp-auth",
        cluster: bool = False,
        front_ttl: float = 5.0,
        lock_ttl: float = 5.0,
        state_ttl: float = 86_400.0,
        timeout: float = 0.5,
        retry_after: float = 5.0,
        maxsize: int = 10_000,
        client: redis.Redis | Any | None = None,
    ) -> None:
        super().__init__(maxsize)
        self._namespace = check_namespace(namespace)
        self._ring = KeyRing(keys)
        self._front_ttl = seconds("cache.front_ttl", front_ttl, positive=True)
        self._lock_ttl = seconds("cache.lock_ttl", lock_ttl, positive=True)
        self._state_ttl = seconds("cache.state_ttl", state_ttl)
        self._timeout = seconds("cache.timeout", timeout, positive=True)
        self._retry_after = seconds("cache.retry_after", retry_after)
        self._link = RedisLink(
            url, client, cluster=cluster, timeout=self._timeout, retry_after=self._retry_after
        )
        self._state_lock = threading.Lock()
        self._warned: dict[str, float] = {}
        self._entries_io = Entries(self._ring, namespace, self._state_ttl, self._warn)
        # Shared name -> this process's cache keys for it, and back; newest generation notified.
        self._names: dict[str, set[Hashable]] = {}
        self._key_names: dict[Hashable, str] = {}
        self._notified: dict[str, int] = {}
        self._pid = os.getpid()
        self._closed = threading.Event()
        self._notices = self._new_notices()
        self._locks = FleetLock(self._link, self._call, self._lock_ttl, self._count)
        self._forgets = Forgets(self._forget_now, self._up, self._closed, self._count)
        self._stats = {"reads": 0, "adopted": 0, "produced": 0, "waited": 0, "fallbacks": 0}

    def _new_notices(self) -> Notices:
        return Notices(self._link, self._namespace, self._notice, self._closed, self._retry_after)

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: Redis reads, contexts adopted from Redis, produced here, waits
        for another process's refresh, and fallbacks to this process alone."""
        with self._state_lock:
            return dict(self._stats)

    def _count(self, name: str) -> None:
        with self._state_lock:
            self._stats[name] += 1
        if name == "adopted":
            _telemetry.adopted()

    # -- the pipeline's side --------------------------------------------------------------------

    def coordinate(
        self,
        customer: Customer,
        *,
        provider: str,
        stale: CachedContext | None,
        renew: bool,
        rejected: bool,
        produce: Callable[[AuthContext | None, bool], CachedContext],
        adopt: Callable[[AuthContext, str, str | None], CachedContext],
        deadline: float,
    ) -> CachedContext:
        name = name_of(self._namespace, provider, customer.id)
        self._remember(name, customer.cache_key)
        if not self._up(name):
            return self._alone(customer.cache_key, stale, renew, produce, adopt)
        ours = gen_of(None if stale is None else stale.version)
        token = secrets.token_hex(16)
        try:
            self._listen(name)
            self._forgets.replay()
            found, clock = self._read(name, customer)
            avoid = (
                (stale.version if stale is not None else found.version if found else None)
                if renew
                else None
            )
            usable = self._usable(found, avoid, ours, adopt)
            if usable is not None:
                return self._front(usable)
            older = found is None or found.trusted_gen < ours
            refused = found is not None and bool(found.refused)
            if not renew and stale is not None and self._good(stale) and older and not refused:
                # Redis lost it, or holds an older one (this process refreshed while Redis was
                # away): share this copy rather than refresh.
                self._share(name, customer, stale, clock)
                return self._front(adopt(stale.context, stale.plugin, stale.version))
            waited = False
            with _telemetry.lock_wait() as wait:
                while not self._locks.take(name, token, deadline, customer, seen(found)):
                    # Another process stored a newer context while this one waited: read it.
                    waited = True
                    found, clock = self._read(name, customer)
                    usable = self._usable(found, avoid, ours, adopt)
                    if usable is not None:
                        self._count("waited")
                        wait.outcome = "newer_stored"
                        return self._front(usable)
            try:
                found, clock = self._read(name, customer)
                usable = self._usable(found, avoid, ours, adopt)
            except BaseException:
                self._locks.release(name, token)
                raise
            if usable is not None:
                self._locks.release(name, token)
                self._count("waited" if waited else "adopted")
                return self._front(usable)
            if found is not None and found.refused and not renew and stale and self._good(stale):
                # A refused entry keeps the fleet from sharing: replace it with this good copy.
                if stale.version is None:
                    stale.version = f"{ours + 1}.{secrets.token_hex(6)}"
                self._write(name, customer, stale, token, clock=clock, refused=found.refused)
                return self._front(adopt(stale.context, stale.plugin, stale.version))
        except Down:
            self._count("fallbacks")
            return self._alone(customer.cache_key, stale, renew, produce, adopt)
        # This process produces for the fleet, from the newest context there is.
        newest = found if found is not None and found.context is not None else None
        if newest is not None and (stale is None or newest.gen >= ours):
            previous: AuthContext | None = newest.context
        else:
            previous = None if stale is None else stale.context
        generation = max(ours, 0 if found is None else found.trusted_gen) + 1
        renewing = self._locks.keep(name, token)
        try:
            # Replacing a context the fleet has (expired, refused, refreshed ahead) is a refresh.
            entry = produce(previous, renew or found is not None)
        except BaseException:
            renewing.set()
            if rejected and found is not None and found.context is not None:
                # Nobody may serve the refused context again, though its state stays.
                self._mark_rejected(name, customer, found, generation, token=token, clock=clock)
            else:
                self._locks.release(name, token)  # a failed refresh shares nothing
            raise
        renewing.set()
        self._count("produced")
        entry.version = f"{generation}.{secrets.token_hex(6)}"
        try:
            refused_sha = "" if found is None else found.refused
            self._write(name, customer, entry, token, clock=clock, refused=refused_sha)
        except Down:
            self._count("fallbacks")
        return self._front(entry)

    def forget(self, customer: Customer, provider: str) -> None:
        name = name_of(self._namespace, provider, customer.id)
        self._drop_local(name)
        self._forgets.put(name)

    def set(self, key: Hashable, entry: CachedContext) -> None:
        name = self._key_names.get(key)
        if name is not None and gen_of(entry.version) < self._notified.get(name, 0):
            return  # another process announced a newer one while this was being read
        super().set(key, entry)

    # -- pieces ---------------------------------------------------------------------------------

    def _name(self, customer: Customer, provider: str) -> str:
        """The customer's key in Redis (for tests and tools)."""
        return name_of(self._namespace, provider, customer.id)

    def _up(self, name: str) -> bool:
        if self._closed.is_set():
            return False
        if os.getpid() != self._pid:
            self._after_fork()
        return self._link.up(name)

    def _after_fork(self) -> None:
        """A forked child has none of its parent's threads: listen anew."""
        with self._state_lock:
            if os.getpid() == self._pid:
                return
            self._pid = os.getpid()
            self._forgets.after_fork()
            self._notices = self._new_notices()

    def _warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._state_lock:
            if now - self._warned.get(kind, -math.inf) < _WARN_EVERY:
                return
            self._warned[kind] = now
        log.warning(message, *args)

    def _call(self, name: str, what: Callable[[Any], Any]) -> Any:
        return self._link.call(name, what)

    def _publish(self, name: str) -> tuple[str, str, str]:
        """The publish command, channel and notice prefix for ``name``."""
        command, channel = self._notices.publish_to(name)
        return command, channel, name

    def _read(self, name: str, customer: Customer) -> tuple[Found | None, Clock]:
        self._count("reads")
        answer = self._call(name, lambda client: scripts.READ(client, name))
        clock = Clock(int(answer[0]), time.monotonic())
        if len(answer) < 2:
            return None, clock
        return self._entries_io.open(bytes(answer[1]), name, customer, clock), clock

    def _usable(
        self,
        found: Found | None,
        avoid: str | None,
        ours: int,
        adopt: Callable[[AuthContext, str, str | None], CachedContext],
    ) -> CachedContext | None:
        if found is None or found.context is None or found.rejected:
            return None
        if found.version == avoid or found.gen < ours:
            return None
        try:
            entry = adopt(found.context, found.plugin, found.version)
        except InvalidContextError:  # already expired
            return None
        if time.monotonic() >= entry.expires_at:
            return None
        self._count("adopted")
        return entry

    @staticmethod
    def _good(entry: CachedContext) -> bool:
        return time.monotonic() < entry.valid_until

    def _remember(self, name: str, key: Hashable) -> None:
        if len(self._key_names) > 2 * self.maxsize:
            # Forgotten names' notices then wait out front_ttl.
            self._names.clear()
            self._key_names.clear()
            self._notified.clear()
            self._notices.forget_all()
        self._names.setdefault(name, set()).add(key)
        self._key_names[key] = name

    def _front(self, entry: CachedContext) -> CachedContext:
        """Serve the process's copy for ``front_ttl`` at most, then read Redis again."""
        entry.expires_at = min(entry.valid_until, time.monotonic() + self._front_ttl)
        return entry

    def _replacing(self, key: Hashable, stale: CachedContext | None) -> CachedContext | None:
        """This process's copy under ``key`` if it is good and newer than ``stale``."""
        current = self.get(key)
        if current is None or stale is None or not self._good(current):
            return None
        if current.version in (None, stale.version):
            return None
        return current if gen_of(current.version) >= gen_of(stale.version) else None

    def _alone(
        self,
        key: Hashable,
        stale: CachedContext | None,
        renew: bool,
        produce: Callable[[AuthContext | None, bool], CachedContext],
        adopt: Callable[[AuthContext, str, str | None], CachedContext],
    ) -> CachedContext:
        """Without Redis: keep serving a copy that is still good; else ask the providers."""
        if stale is not None and not renew and self._good(stale):
            return self._front(adopt(stale.context, stale.plugin, stale.version))
        current = self._replacing(key, stale) if renew else None
        if current is not None:
            # Another thread here replaced ``stale`` meanwhile (as another process would have,
            # with Redis up): a refresh of ``stale`` is done.
            return self._front(adopt(current.context, current.plugin, current.version))
        ours = gen_of(None if stale is None else stale.version)
        entry = produce(None if stale is None else stale.context, renew)
        # A generation above the last one seen: when Redis is back, this one is the newer.
        entry.version = f"{ours + 1}.{secrets.token_hex(6)}"
        return self._front(entry)

    def _write(
        self,
        name: str,
        customer: Customer,
        entry: CachedContext,
        token: str,
        *,
        clock: Clock,
        refused: str = "",
    ) -> None:
        """Store ``entry`` under the lock ``token``; ``refused``: the SHA-1 of an entry read and
        refused, which the store may replace whatever its generation."""
        value, ttl = self._entries_io.seal(name, customer, entry, clock)
        gen = gen_of(entry.version)

        def store(client: Any) -> Any:
            publish = self._publish(name)
            notice = f"{name} {entry.version}"
            args = (token, value, ttl, gen, refused, publish[0], publish[1], notice)
            return scripts.STORE(client, name, *args)

        outcome = self._call(name, store)
        if outcome == 0:
            self._warn(
                "lapsed",
                "the refresh lock of customer %s lapsed before its context was stored (Redis "
                "restarted, failed over, or stalled past lock_ttl); it was not shared",
                logged(customer.id),
            )
        elif outcome == 3:
            log.info("a newer context of customer %s was already shared", logged(customer.id))
        elif outcome == 4:
            self._warn(
                "replaced",
                "a shared entry under namespace %r, refused as unreadable or tampered, was "
                "replaced with a new one",
                self._namespace,
            )

    def _mark_rejected(
        self, name: str, customer: Customer, found: Found, gen: int, *, token: str, clock: Clock
    ) -> None:
        assert found.context is not None
        marked = CachedContext(found.context, found.plugin, 0.0, 0.0, 0.0)
        marked.version = f"{gen}.rejected"
        try:
            value, ttl = self._entries_io.seal(name, customer, marked, clock, rejected=True)

            def store(client: Any) -> Any:
                command, channel, _ = self._publish(name)
                notice = f"{name} {marked.version}"
                args = (token, value, ttl, gen, "", command, channel, notice)
                return scripts.STORE(client, name, *args)

            self._call(name, store)
        except Down:
            self._count("fallbacks")
            self._locks.release(name, token)

    def _share(self, name: str, customer: Customer, entry: CachedContext, clock: Clock) -> None:
        if entry.version is None:
            entry.version = f"1.{secrets.token_hex(6)}"
        value, ttl = self._entries_io.seal(name, customer, entry, clock)
        gen = gen_of(entry.version)

        def share(client: Any) -> Any:
            command, channel, _ = self._publish(name)
            notice = f"{name} {entry.version}"
            return scripts.SHARE(client, name, value, ttl, gen, command, channel, notice)

        self._call(name, share)

    def _forget_now(self, name: str) -> object:
        tombstone = max(1, int((2 * self._lock_ttl + self._front_ttl) * 1000))

        def forget(client: Any) -> Any:
            command, channel, _ = self._publish(name)
            return scripts.FORGET(client, name, tombstone, command, channel, f"{name} -")

        return self._call(name, forget)

    def _drop_local(self, name: str) -> None:
        self._notified.pop(name, None)
        for key in list(self._names.get(name, ())):
            self.pop(key)

    # -- notices from other processes -----------------------------------------------------------

    def _listen(self, name: str) -> None:
        """Listen for ``name``'s notices before reading it, so that none is missed once read;
        waits for Redis to confirm at most ``timeout``, once per customer."""
        self._link.client()  # builds a cluster's client; raises Down when none answers
        ready = self._notices.want(name)
        if not ready.is_set():
            ready.wait(self._timeout)

    def _notice(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        if " " not in text:
            return
        name, version = text.split(" ", 1)
        if version == "-":
            self._drop_local(name)
            return
        gen = gen_of(version)
        if gen > self._notified.get(name, 0):
            self._notified[name] = gen
        for key in list(self._names.get(name, ())):
            entry = self.get(key)
            if entry is not None and entry.version != version and gen_of(entry.version) <= gen:
                with self._lock:
                    if self._mirror.get(key) is entry:
                        self._mirror.pop(key, None)
                        self._entries.pop(key, None)

    def close(self) -> None:
        """Stop listening and close the connections this cache opened; later fetches are made
        by this process alone. Call it from synchronous code (it waits up to a second)."""
        self._closed.set()
        self._notices.close()
        self._link.close()

    def __repr__(self) -> str:
        kind = ", cluster" if self._link.cluster else ""
        return (
            f"RedisContextCache({self._link.shown}{kind}, namespace={self._namespace!r}, "
            f"front_ttl={self._front_ttl:g}, entries={len(self)})"
        )
