"""``RedisContextCache``: contexts shared by every process pointed at one Redis and namespace.

Each process keeps a short-lived copy of a context in front (``front_ttl`` seconds), so a cached
request never waits for Redis. When a copy is missing or stale, the pipeline calls
``coordinate`` (in the request's thread, or a worker thread under asyncio; never on an event
loop), which reads Redis and, only when the fleet has no fresh context either, takes the
customer's refresh lock (``SET NX PX lock_ttl``, renewed while the provider runs, so a crashed
holder blocks nobody for longer than ``lock_ttl``), reads again, asks the providers from the
newest context the fleet has (its ``state``: a rotated refresh token), and stores the result in
a script that writes only while the lock is its own, only over an older generation, and never
over a customer cleared meanwhile. Other processes wait for the lock, bounded by the provider
timeout, and read what the holder stored. Every store publishes the new version on the
namespace's channel; every process drops its copy of an older one.

Entries carry a generation, in clear ahead of the sealed value and bound to it: no process ever
goes back to an older context than one it has, and one that produced alone while Redis was away
shares its newer context when Redis is back. Entries outlive their context by ``state_ttl`` so
that its state is still there for the next refresh after a quiet period.

Values are sealed (``asapp_auth.sealing``: AES-256-GCM, keys rotate) and bound to their name and
generation: a tampered value, one sealed with a key not configured here, or one copied from
another customer's name, is a miss with a warning. Expiry is counted on Redis's clock, so hosts
whose clocks differ agree on it. Redis down, slow or restarted never fails a request: the process
serves its own copy, asks its providers itself when it must, warns once per outage, and tries
Redis again after ``retry_after`` seconds.

Needs ``pip install 'asapp-auth[redis]'`` (redis-py and cryptography).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._checks import redis_url_problem, seconds
from .cache import CachedContext, MemoryContextCache
from .context import AuthContext
from .customer import Customer
from .errors import AsappAuthError, ConfigurationError, InvalidContextError, ProviderTimeoutError
from .sealing import KeyRing, UnsealError

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigurationError(
        "the Redis cache needs redis-py: pip install 'asapp-auth[redis]'"
    ) from exc

__all__ = ["RedisContextCache"]

log = logging.getLogger("asapp_auth.redis_cache")

# Generations are whole numbers of at most _GEN_DIGITS digits, compared exactly: Lua numbers are
# doubles, exact up to 2**53, which 15 digits stay below. A longer or malformed prefix is refused
# as tampering rather than compared (10**30 would pass for every later generation).
_GEN_DIGITS = 15
# The generation of a stored value, in clear ahead of the sealed bytes: "<gen>|<sealed>". nil
# when there is no value, false when its prefix is refused.
_GEN_OF = """
local function gen(v)
  if not v then return nil end
  local digits = string.match(v, '^(%d+)|')
  if not digits or #digits > 15 then return false end
  return tonumber(digits)
end
"""
# Store a produced context: only while the lock is ours, never after the customer was cleared,
# never over a newer generation. Releases the lock in any case. 1 stored, 0 lock lost, 2 cleared,
# 3 older than what Redis holds, 4 stored over an entry refused as tampered: one whose prefix is
# refused here, or the very value (ARGV[7], its SHA-1) the caller read and could not open.
_STORE = (
    _GEN_OF
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
local value = redis.call('GET', KEYS[1])
local current = gen(value)
local refused = current == false or (value and ARGV[7] ~= '' and redis.sha1hex(value) == ARGV[7])
if current and not refused and current >= tonumber(ARGV[6]) then return 3 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
if refused then return 4 end
return 1
"""
)
# Share a copy that is still good (Redis lost it, or holds an older one): no lock needed, so
# never over an entry refused as tampered (4): that one is replaced under the lock.
_SHARE = (
    _GEN_OF
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local current = gen(redis.call('GET', KEYS[1]))
if current == false then return 4 end
if current and current >= tonumber(ARGV[3]) then return 3 end
if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
)
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# A customer cleared: its context goes, and a tombstone keeps late refreshes from storing it.
_FORGET = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
_POLL_FIRST, _POLL_MAX = 0.002, 0.02
_WARN_EVERY = 60.0


class _Down(Exception):
    """Redis did not answer as expected; the process carries on with its own copies."""


@dataclass(slots=True)
class _Found:
    """An entry read from Redis. ``context`` is ``None`` when it could not be opened; then
    ``refused`` is the SHA-1 of the value, which the store script may replace, and ``gen`` (the
    prefix as read, -1 when malformed) only tells a later change apart: it is not trusted."""

    gen: int
    version: str
    context: AuthContext | None = None
    plugin: str = ""
    rejected: bool = False
    refused: str = ""

    @property
    def trusted_gen(self) -> int:
        """The generation to count from: 0 for an entry that could not be opened."""
        return 0 if self.refused else self.gen


def _digits(head: bytes | str) -> int:
    """A generation's digits as a number; -1 unless 1 to ``_GEN_DIGITS`` ASCII digits."""
    if isinstance(head, bytes):
        head = head.decode("ascii", "replace")
    if not 0 < len(head) <= _GEN_DIGITS or not head.isascii() or not head.isdigit():
        return -1
    return int(head)


def _gen(version: str | None) -> int:
    return max(0, _digits(version.split(".", 1)[0])) if version else 0


def _shown_url(url: str) -> str:
    """Scheme, host, port and database: never a user name, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisContextCache(MemoryContextCache):
    """A context cache shared through Redis, with an in-process copy in front.

    :param url: ``redis://host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket); or
        give ``client``.
    :param keys: the keys that seal entries, newest first (see ``asapp_auth.sealing.KeyRing``):
        32-byte keys, or ``env:NAME`` / ``file:PATH`` references to them.
    :param namespace: processes share entries only within one namespace.
    :param front_ttl: seconds a process serves its own copy before reading Redis again (the
        longest another process's refresh can go unseen if its notice is lost).
    :param lock_ttl: the refresh lock's lifetime, renewed while its holder's provider runs: how
        long a crashed holder can keep the fleet waiting. Keep it below ``provider_timeout``.
    :param state_ttl: seconds an entry is kept past its context's expiry, for its state (a
        refresh token) to seed the next refresh.
    :param timeout: seconds a Redis command may take before Redis counts as down.
    :param retry_after: seconds before Redis is tried again once it was found down.
    :param maxsize: entries kept in front, as ``MemoryContextCache``.
    :param client: a ``redis.Redis`` to use instead of ``url`` (bytes responses: no
        ``decode_responses``). It stays the caller's to close.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        keys: Iterable[bytes | str] | str,
        namespace: str = "asapp-auth",
        front_ttl: float = 5.0,
        lock_ttl: float = 5.0,
        state_ttl: float = 86_400.0,
        timeout: float = 0.5,
        retry_after: float = 5.0,
        maxsize: int = 10_000,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__(maxsize)
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ConfigurationError(f"cache.namespace must be one word, not {namespace!r}")
        self._ring = KeyRing(keys)
        self._namespace = namespace
        self._front_ttl = seconds("cache.front_ttl", front_ttl, positive=True)
        self._lock_ttl = seconds("cache.lock_ttl", lock_ttl, positive=True)
        self._state_ttl = seconds("cache.state_ttl", state_ttl)
        self._timeout = seconds("cache.timeout", timeout, positive=True)
        self._retry_after = seconds("cache.retry_after", retry_after)
        self._owns_client = client is None
        if client is None:
            problem = redis_url_problem(url)
            if problem is not None or not isinstance(url, str):
                raise ConfigurationError(f"cache.url {problem}")
            try:
                client = redis.Redis.from_url(
                    url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    # One try: a request that finds Redis down goes on without it at once.
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=30,
                )
            except ValueError:
                raise ConfigurationError(
                    f"cache.url is not a Redis URL redis-py can use ({_shown_url(url)})"
                ) from None
            self._url = _shown_url(url)
        else:
            kwargs = getattr(client, "connection_pool", None)
            if kwargs is not None and kwargs.connection_kwargs.get("decode_responses"):
                raise ConfigurationError(
                    "the Redis client given as cache client decodes responses; sealed entries are "
                    "bytes: give a client made without decode_responses=True"
                )
            self._url = "the given Redis client"
        self._redis = client
        self._store = client.register_script(_STORE)
        self._share_script = client.register_script(_SHARE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._forget = client.register_script(_FORGET)
        self._channel = f"{namespace}:events"
        self._state_lock = threading.Lock()
        self._down_until = 0.0
        self._outage = False
        self._warned: dict[str, float] = {}
        # Shared name -> this process's cache keys for it, and back; newest generation notified.
        self._names: dict[str, set[Hashable]] = {}
        self._key_names: dict[Hashable, str] = {}
        self._notified: dict[str, int] = {}
        self._pid = os.getpid()
        self._listener: threading.Thread | None = None
        self._settled = threading.Event()
        self._closed = threading.Event()
        self._forgets: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pending: set[str] = set()
        self._forgetter: threading.Thread | None = None
        self._stats = {"reads": 0, "adopted": 0, "produced": 0, "waited": 0, "fallbacks": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: Redis reads, contexts adopted from Redis, produced here, waits
        for another process's refresh, and fallbacks to this process alone."""
        with self._state_lock:
            return dict(self._stats)

    def _count(self, name: str) -> None:
        with self._state_lock:
            self._stats[name] += 1

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
        name = self._name(customer, provider)
        self._remember(name, customer.cache_key)
        if not self._up():
            return self._alone(stale, renew, produce, adopt)
        self._listen()
        self._replay_forgets()
        ours = _gen(None if stale is None else stale.version)
        token = secrets.token_hex(16)
        try:
            found = self._read(name, customer)
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
                self._share(name, customer, stale)
                return self._front(adopt(stale.context, stale.plugin, stale.version))
            waited = False
            while not self._take_lock(name, token, deadline, customer, found):
                # Another process stored a newer context while this one waited: read it.
                waited = True
                found = self._read(name, customer)
                usable = self._usable(found, avoid, ours, adopt)
                if usable is not None:
                    self._count("waited")
                    return self._front(usable)
            try:
                found = self._read(name, customer)
                usable = self._usable(found, avoid, ours, adopt)
            except BaseException:
                self._release_lock(name, token)
                raise
            if usable is not None:
                self._release_lock(name, token)
                self._count("waited" if waited else "adopted")
                return self._front(usable)
            if found is not None and found.refused and not renew and stale and self._good(stale):
                # A refused entry keeps the fleet from sharing: replace it with this good copy.
                if stale.version is None:
                    stale.version = f"{ours + 1}.{secrets.token_hex(6)}"
                self._write(name, customer, stale, token, found.refused)
                return self._front(adopt(stale.context, stale.plugin, stale.version))
        except _Down as exc:
            self._fell_back(exc)
            return self._alone(stale, renew, produce, adopt)
        # This process produces for the fleet, from the newest context there is.
        newest = found if found is not None and found.context is not None else None
        if newest is not None and (stale is None or newest.gen >= ours):
            previous: AuthContext | None = newest.context
        else:
            previous = None if stale is None else stale.context
        generation = max(ours, 0 if found is None else found.trusted_gen) + 1
        renewing = self._renewing(name, token)
        try:
            # Replacing a context the fleet has (expired, refused, refreshed ahead) is a refresh.
            entry = produce(previous, renew or found is not None)
        except BaseException:
            renewing.set()
            if rejected and found is not None and found.context is not None:
                # Nobody may serve the refused context again, though its state stays.
                self._mark_rejected(name, customer, found, generation, token)
            else:
                self._release_lock(name, token)  # a failed refresh shares nothing
            raise
        renewing.set()
        self._count("produced")
        entry.version = f"{generation}.{secrets.token_hex(6)}"
        try:
            self._write(name, customer, entry, token, "" if found is None else found.refused)
        except _Down as exc:
            self._fell_back(exc)
        return self._front(entry)

    def forget(self, customer: Customer, provider: str) -> None:
        name = self._name(customer, provider)
        self._drop_local(name)
        self._forgets.put(name)
        if self._forgetter is None or not self._forgetter.is_alive():
            with self._state_lock:
                if self._forgetter is None or not self._forgetter.is_alive():
                    # One thread for every forget: clear() may be called on an event loop.
                    self._forgetter = threading.Thread(
                        target=self._forget_loop, daemon=True, name="asapp-auth-redis-forget"
                    )
                    self._forgetter.start()

    def set(self, key: Hashable, entry: CachedContext) -> None:
        name = self._key_names.get(key)
        if name is not None and _gen(entry.version) < self._notified.get(name, 0):
            return  # another process announced a newer one while this was being read
        super().set(key, entry)

    # -- pieces ---------------------------------------------------------------------------------

    def _name(self, customer: Customer, provider: str) -> str:
        digest = hashlib.sha256(f"{provider}\0{customer.id}".encode()).hexdigest()[:32]
        return f"{self._namespace}:{digest}"

    @staticmethod
    def _keys_of(name: str) -> tuple[str, str, str]:
        return f"{name}:ctx", f"{name}:lock", f"{name}:gone"

    def _up(self) -> bool:
        if self._closed.is_set():
            return False
        if os.getpid() != self._pid:
            self._after_fork()
        return time.monotonic() >= self._down_until

    def _after_fork(self) -> None:
        """A forked child has none of its parent's threads: listen anew."""
        with self._state_lock:
            if os.getpid() == self._pid:
                return
            self._pid = os.getpid()
            self._listener = self._forgetter = None
            self._settled = threading.Event()

    def _warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._state_lock:
            if now - self._warned.get(kind, -math.inf) < _WARN_EVERY:
                return
            self._warned[kind] = now
        log.warning(message, *args)

    def _fell_back(self, exc: BaseException) -> None:
        self._count("fallbacks")
        with self._state_lock:
            first = not self._outage
            self._outage = True
            self._down_until = time.monotonic() + self._retry_after
        if first:
            log.warning(
                "Redis at %s did not answer (%s); each process serves from its own cache and asks "
                "its providers itself until Redis is back (tried again every %gs)",
                self._url,
                exc,
                self._retry_after,
            )

    def _answered(self) -> None:
        if self._outage:
            with self._state_lock:
                back, self._outage = self._outage, False
            if back:
                log.warning("Redis at %s answers again; contexts are shared again", self._url)

    def _call(self, what: Callable[[], Any]) -> Any:
        try:
            result = what()
        except AsappAuthError:
            raise
        except Exception as exc:  # any failure of the client is Redis trouble, not the request's
            raise _Down(type(exc).__name__) from exc
        self._answered()
        return result

    def _read(self, name: str, customer: Customer) -> _Found | None:
        self._count("reads")
        key = self._keys_of(name)[0]

        def get() -> list[Any]:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.time()
                return list(pipe.execute())

        raw, (seconds, micros) = self._call(get)
        if raw is None:
            return None
        redis_now = seconds * 1000 + micros // 1000
        raw = bytes(raw)
        refused = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
        head, bar, sealed = raw.partition(b"|")
        gen = _digits(head)
        if not bar or gen < 0:
            self._warn(
                "shape",
                "an entry in Redis under namespace %r is not asapp-auth's, or its generation is "
                "out of range (tampered?); refused, and replaced under the refresh lock",
                self._namespace,
            )
            return _Found(-1, "0.refused", refused=refused)
        try:
            record = json.loads(self._ring.open(sealed, f"{name}|{gen}".encode()))
            if not isinstance(record, Mapping) or record.get("customer") != customer.id:
                raise InvalidContextError("the entry is for another customer")
            plugin, version = record["plugin"], record["version"]
            if not isinstance(plugin, str) or not isinstance(version, str) or _gen(version) != gen:
                raise InvalidContextError("the entry's plugin or version is malformed")
            stored = dict(record["context"])
            expires_ms = record["expires_ms"]
            if expires_ms is not None:
                # Counted on Redis's clock, told in this host's: hosts' clocks may differ.
                stored["expires_ts"] = time.time() + (expires_ms - redis_now) / 1000
            context = AuthContext.from_record(stored, source="the Redis cache")
            rejected = record.get("rejected") is True
        except (UnsealError, InvalidContextError, ValueError, KeyError, TypeError) as exc:
            self._warn(
                "unusable",
                "a shared context (customer %r) could not be used (%s); treated as a miss: check "
                "that every process has the same cache.keys",
                customer.id,
                exc,
            )
            return _Found(gen, f"{gen}.unreadable", refused=refused)
        return _Found(gen, version, context, plugin, rejected)

    def _usable(
        self,
        found: _Found | None,
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
        self._names.setdefault(name, set()).add(key)
        self._key_names[key] = name

    def _front(self, entry: CachedContext) -> CachedContext:
        """Serve the process's copy for ``front_ttl`` at most, then read Redis again."""
        entry.expires_at = min(entry.valid_until, time.monotonic() + self._front_ttl)
        return entry

    def _alone(
        self,
        stale: CachedContext | None,
        renew: bool,
        produce: Callable[[AuthContext | None, bool], CachedContext],
        adopt: Callable[[AuthContext, str, str | None], CachedContext],
    ) -> CachedContext:
        """Without Redis: keep serving a copy that is still good; else ask the providers."""
        if stale is not None and not renew and self._good(stale):
            return self._front(adopt(stale.context, stale.plugin, stale.version))
        ours = _gen(None if stale is None else stale.version)
        entry = produce(None if stale is None else stale.context, renew)
        # A generation above the last one seen: when Redis is back, this one is the newer.
        entry.version = f"{ours + 1}.{secrets.token_hex(6)}"
        return self._front(entry)

    def _take_lock(
        self, name: str, token: str, deadline: float, customer: Customer, seen: _Found | None
    ) -> bool:
        """Take the customer's refresh lock (``True``), or return ``False`` as soon as an entry
        newer than ``seen`` is stored. Raises ``ProviderTimeoutError`` past ``deadline``."""
        ctx, lock_key, _ = self._keys_of(name)
        ttl = max(1, int(self._lock_ttl * 1000))
        seen_gen = -1 if seen is None else seen.gen
        pause = _POLL_FIRST

        def attempt() -> tuple[bool, int]:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(lock_key, token, nx=True, px=ttl)
                pipe.getrange(ctx, 0, 19)  # the generation, not the whole sealed value
                taken, head = pipe.execute()
            gen, bar, _ = bytes(head).partition(b"|")
            return bool(taken), _digits(gen) if bar else -1

        while True:
            taken, gen = self._call(attempt)
            if taken:
                return True
            if gen > seen_gen:
                return False
            if time.monotonic() + pause > deadline:
                raise ProviderTimeoutError(
                    f"another process kept refreshing the context of customer {customer.id!r} "
                    f"past the provider timeout; if it crashed, its lock lapses within "
                    f"lock_ttl={self._lock_ttl:g}s. Nothing was cached: the next request asks "
                    "again",
                    customer_id=customer.id,
                )
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    def _renewing(self, name: str, token: str) -> threading.Event:
        """Keep the lock while the provider runs; set the returned event to stop."""
        done = threading.Event()
        lock_key, ttl = self._keys_of(name)[1], max(1, int(self._lock_ttl * 1000))

        def renew() -> None:
            while not done.wait(self._lock_ttl / 3):
                try:
                    if not self._renew(keys=[lock_key], args=[token, ttl]):
                        return  # lost (Redis restarted): the store will find out
                except Exception:  # Redis trouble: the store will find out
                    return

        threading.Thread(target=renew, daemon=True, name="asapp-auth-redis-lock").start()
        return done

    def _release_lock(self, name: str, token: str) -> None:
        try:
            self._release(keys=[self._keys_of(name)[1]], args=[token])
        except Exception as exc:  # the lock then lapses by itself
            self._fell_back(_Down(type(exc).__name__))

    def _sealed(
        self,
        name: str,
        customer: Customer,
        entry: CachedContext,
        rejected: bool = False,
    ) -> tuple[bytes, int]:
        """The value to store and its time to live in ms (0: none), on Redis's clock."""
        remaining = entry.context.remaining()
        seconds, micros = self._call(self._redis.time)
        redis_now = seconds * 1000 + micros // 1000
        gen = _gen(entry.version)
        record = {
            "customer": customer.id,
            "plugin": entry.plugin,
            "version": entry.version,
            "context": entry.context.to_record(),
            "expires_ms": None if remaining is None else redis_now + int(remaining * 1000),
            "rejected": rejected,
        }
        sealed = self._ring.seal(json.dumps(record).encode(), f"{name}|{gen}".encode())
        ttl = 0 if remaining is None else max(1, int((remaining + self._state_ttl) * 1000))
        return f"{gen}|".encode() + sealed, ttl

    def _write(
        self, name: str, customer: Customer, entry: CachedContext, token: str, refused: str = ""
    ) -> None:
        """Store ``entry`` under the lock ``token``; ``refused``: the SHA-1 of an entry read and
        refused, which the store may replace whatever its generation."""
        value, ttl = self._sealed(name, customer, entry)
        ctx, lock, gone = self._keys_of(name)
        notice = f"{name} {entry.version}"
        outcome = self._call(
            lambda: self._store(
                keys=[ctx, lock, gone],
                args=[token, value, ttl, self._channel, notice, _gen(entry.version), refused],
            )
        )
        if outcome == 0:
            self._warn(
                "lapsed",
                "the refresh lock of customer %r lapsed before its context was stored (Redis "
                "restarted, or stalled past lock_ttl); it was not shared",
                customer.id,
            )
        elif outcome == 3:
            log.info("a newer context of customer %r was already shared", customer.id)
        elif outcome == 4:
            self._warn(
                "replaced",
                "a shared entry under namespace %r, refused as unreadable or tampered, was "
                "replaced with a new one",
                self._namespace,
            )

    def _mark_rejected(
        self, name: str, customer: Customer, found: _Found, gen: int, token: str
    ) -> None:
        assert found.context is not None
        marked = CachedContext(found.context, found.plugin, 0.0, 0.0, 0.0)
        marked.version = f"{gen}.rejected"
        try:
            value, ttl = self._sealed(name, customer, marked, rejected=True)
            ctx, lock, gone = self._keys_of(name)
            notice = f"{name} {marked.version}"
            self._call(
                lambda: self._store(
                    keys=[ctx, lock, gone],
                    args=[token, value, ttl, self._channel, notice, gen, ""],
                )
            )
        except _Down as exc:
            self._fell_back(exc)
            self._release_lock(name, token)

    def _share(self, name: str, customer: Customer, entry: CachedContext) -> None:
        if entry.version is None:
            entry.version = f"1.{secrets.token_hex(6)}"
        value, ttl = self._sealed(name, customer, entry)
        ctx, _, gone = self._keys_of(name)
        notice = f"{name} {entry.version}"
        self._call(
            lambda: self._share_script(
                keys=[ctx, gone], args=[value, ttl, _gen(entry.version), self._channel, notice]
            )
        )

    # -- clearing -------------------------------------------------------------------------------

    def _forget_loop(self) -> None:
        while not self._closed.is_set():
            try:
                name = self._forgets.get(timeout=1.0)
            except queue.Empty:
                continue
            if not self._up():
                with self._state_lock:
                    self._pending.add(name)
                continue
            try:
                self._call(functools.partial(self._forget_now, name))
            except _Down as exc:
                with self._state_lock:
                    self._pending.add(name)
                self._fell_back(exc)

    def _forget_now(self, name: str) -> Any:
        ctx, _, gone = self._keys_of(name)
        tombstone = max(1, int((2 * self._lock_ttl + self._front_ttl) * 1000))
        return self._forget(keys=[ctx, gone], args=[tombstone, self._channel, f"{name} -"])

    def _replay_forgets(self) -> None:
        """Customers cleared while Redis was away are cleared for the fleet once it is back."""
        if not self._pending:
            return
        with self._state_lock:
            pending, self._pending = self._pending, set()
        for name in pending:
            self._forgets.put(name)

    def _drop_local(self, name: str) -> None:
        self._notified.pop(name, None)
        for key in list(self._names.get(name, ())):
            self.pop(key)

    # -- notices from other processes -----------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is None:
            with self._state_lock:
                if self._listener is None:
                    self._listener = threading.Thread(
                        target=self._listen_loop, daemon=True, name="asapp-auth-redis-events"
                    )
                    self._listener.start()
        # Until Redis confirms the subscription (or fails), a notice could be missed.
        self._settled.wait(self._timeout)

    def _listen_loop(self) -> None:
        settled = self._settled
        while not self._closed.is_set():
            pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        settled.set()
                    elif message.get("type") == "message":
                        self._notice(message.get("data"))
            except Exception as exc:  # Redis trouble: subscribe again later
                settled.set()
                log.debug("notices from Redis interrupted (%s); subscribing again", exc)
                self._closed.wait(max(0.1, min(self._retry_after, 1.0)))
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: S110 - closing a broken connection
                    pass

    def _notice(self, data: object) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if not isinstance(data, str) or " " not in data:
            return
        name, version = data.split(" ", 1)
        if version == "-":
            self._drop_local(name)
            return
        gen = _gen(version)
        if gen > self._notified.get(name, 0):
            self._notified[name] = gen
        for key in list(self._names.get(name, ())):
            entry = self.get(key)
            if entry is not None and entry.version != version and _gen(entry.version) <= gen:
                with self._lock:
                    if self._mirror.get(key) is entry:
                        self._mirror.pop(key, None)
                        self._entries.pop(key, None)

    def close(self) -> None:
        """Stop listening and close the connections this cache opened; later fetches are made
        by this process alone. Call it from synchronous code (it waits up to a second)."""
        self._closed.set()
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout=1.0)
        if self._owns_client:
            self._redis.close()

    def __repr__(self) -> str:
        return (
            f"RedisContextCache({self._url}, namespace={self._namespace!r}, "
            f"front_ttl={self._front_ttl:g}, entries={len(self)})"
        )
