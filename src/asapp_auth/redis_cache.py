"""``RedisContextCache``: contexts shared by every process pointed at one Redis and namespace.

Each process keeps a short-lived copy of a context in front (``front_ttl`` seconds), so a cached
request never waits for Redis. When a copy is missing or stale, the pipeline calls
``coordinate`` (in the request's thread, or a worker thread under asyncio; never on an event
loop), which reads Redis and, only when the fleet has no fresh context either, takes the fleet's
refresh lock for that customer (``SET NX PX``: a crashed holder blocks nobody past ``lock_ttl``),
reads again, asks the providers, stores the result sealed, and releases the lock in one script
that writes only while the lock is still its own. Other processes wait for the holder, bounded
by the provider timeout, and read what it stored. A refresh publishes the new version on the
namespace's channel; every process drops its copy of an older one.

Values are sealed (``asapp_auth.sealing``: AES-256-GCM, keys rotate) and bound to their key: a
tampered value, or one sealed with a key not configured here, or copied from another customer's
key, is a miss with a warning. Redis down, slow or restarted never fails a request: the process
serves from its own copy, asks its providers itself when it must, warns once, and tries Redis
again after ``retry_after`` seconds.

Needs ``pip install 'asapp-auth[redis]'`` (redis-py and cryptography).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .cache import CachedContext, MemoryContextCache
from .context import AuthContext
from .customer import Customer
from .errors import ConfigurationError, InvalidContextError, ProviderTimeoutError
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

# Compare-and-write: store the context and release the lock only while the lock is ours, so a
# holder that outlived its lock never overwrites the newer context of the one that took over.
_STORE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_POLL_FIRST, _POLL_MAX = 0.005, 0.05


class _Down(Exception):
    """Redis did not answer; carries on from the process's own copy."""


def _number(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"cache.{name} must be a number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigurationError(f"cache.{name} must be above 0, not {value!r}")
    return float(value)


class RedisContextCache(MemoryContextCache):
    """A context cache shared through Redis, with an in-process copy in front.

    :param url: ``redis://host:port/db`` (``rediss://`` for TLS); or give ``client``.
    :param keys: the keys that seal entries, newest first (see ``asapp_auth.sealing.KeyRing``):
        32-byte keys, or ``env:NAME`` / ``file:PATH`` references to them.
    :param namespace: processes share entries only within one namespace.
    :param front_ttl: seconds a process serves its own copy before reading Redis again (the
        longest another process's refresh can go unseen if its notice is lost).
    :param lock_ttl: lifetime of the fleet's refresh lock; keep it at least the pipeline's
        ``provider_timeout``, so a slow provider keeps the lock while it answers.
    :param timeout: seconds a Redis command may take before Redis counts as down.
    :param retry_after: seconds before Redis is tried again once it was found down.
    :param maxsize: entries kept in front, as ``MemoryContextCache``.
    :param client: a ``redis.Redis`` to use instead of ``url`` (its own timeouts then apply).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        keys: Iterable[bytes | str] | str,
        namespace: str = "asapp-auth",
        front_ttl: float = 5.0,
        lock_ttl: float = 30.0,
        timeout: float = 0.5,
        retry_after: float = 5.0,
        maxsize: int = 10_000,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__(maxsize)
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ConfigurationError(f"cache.namespace must be a word, not {namespace!r}")
        self._ring = KeyRing(keys)
        self._namespace = namespace
        self._front_ttl = _number("front_ttl", front_ttl)
        self._lock_ttl = _number("lock_ttl", lock_ttl)
        self._timeout = _number("timeout", timeout)
        self._retry_after = _number("retry_after", retry_after, positive=False)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        if client is None:
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError(
                    f"cache.url must be a redis://, rediss:// or unix:// URL, not {url!r}"
                )
            client = redis.Redis.from_url(
                url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                # One try: a request that finds Redis down goes on without it at once.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
        self._url = _shown_url(url) if url else repr(client)
        self._redis = client
        self._store = client.register_script(_STORE)
        self._release = client.register_script(_RELEASE)
        self._channel = f"{namespace}:events"
        self._down_until = 0.0
        self._state_lock = threading.Lock()
        # Shared name -> this process's cache keys for it, for notices from other processes.
        self._names: dict[str, object] = {}
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()
        self._subscribed = threading.Event()
        self.stats = {"reads": 0, "adopted": 0, "produced": 0, "waited": 0, "fallbacks": 0}

    # -- the pipeline's side --------------------------------------------------------------------

    def coordinate(
        self,
        customer: Customer,
        *,
        provider: str,
        stale: CachedContext | None,
        renew: bool,
        produce: Callable[[AuthContext | None], CachedContext],
        adopt: Callable[[AuthContext, str, str | None], CachedContext],
        deadline: float,
    ) -> CachedContext:
        self._listen()
        name = self._name(customer, provider)
        self._remember(name, customer.cache_key)
        avoid = stale.version if renew and stale is not None else None
        if not self._up():
            return self._alone(stale, renew, produce, adopt)
        token = secrets.token_hex(16)
        try:
            waited = False
            while True:
                found = self._read(name, customer)
                usable = self._usable(found, avoid, adopt)
                if usable is not None:
                    self.stats["waited"] += waited
                    return self._front(usable)
                if found is None and stale is not None and not renew and self._good(stale):
                    # Redis lost it (restarted, evicted) while this copy is good: share it again.
                    self._share(name, customer, stale)
                    return self._front(adopt(stale.context, stale.plugin, stale.version))
                if self._take_lock(name, token, deadline):
                    break
                waited = True  # the holder stored a context: read it
            try:
                found = self._read(name, customer)
            except _Down:
                self._release_lock(name, token)
                raise
            usable = self._usable(found, avoid, adopt)
            if usable is not None:
                self._release_lock(name, token)
                return self._front(usable)
        except _Down as exc:
            self._fell_back(exc)
            return self._alone(stale, renew, produce, adopt)
        # This process produces for the fleet, from the newest context the fleet has.
        previous = found[0] if found is not None else None if stale is None else stale.context
        try:
            entry = produce(previous)
        except BaseException:
            self._release_lock(name, token)  # a failed refresh shares nothing and holds nobody up
            raise
        self.stats["produced"] += 1
        entry.version = secrets.token_hex(8)
        try:
            self._write(name, customer, entry, token)
        except _Down as exc:
            self._fell_back(exc)
        return self._front(entry)

    def forget(self, customer: Customer, provider: str) -> None:
        name = self._name(customer, provider)
        if not self._up():
            return

        def drop() -> None:
            try:
                with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(self._key(name))
                    pipe.publish(self._channel, f"{name} -")
                    pipe.execute()
            except self._errors as exc:
                self._fell_back(_Down(type(exc).__name__))

        # Off the caller's thread: clear() may be called on an event loop.
        threading.Thread(target=drop, daemon=True, name="asapp-auth-redis-forget").start()

    # -- pieces ---------------------------------------------------------------------------------

    def _name(self, customer: Customer, provider: str) -> str:
        digest = hashlib.sha256(f"{provider}\0{customer.id}".encode()).hexdigest()[:32]
        return f"{self._namespace}:{digest}"

    @staticmethod
    def _key(name: str) -> str:
        return f"{name}:ctx"

    @staticmethod
    def _lock_key(name: str) -> str:
        return f"{name}:lock"

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _fell_back(self, exc: BaseException) -> None:
        self.stats["fallbacks"] += 1
        with self._state_lock:
            was_up = self._up()
            self._down_until = time.monotonic() + self._retry_after
        if was_up:
            log.warning(
                "Redis at %s did not answer (%s); each process serves from its own cache and asks "
                "its providers itself until Redis is back (tried again in %gs)",
                self._url,
                exc,
                self._retry_after,
            )

    def _call(self, what: Callable[[], Any]) -> Any:
        try:
            return what()
        except self._errors as exc:
            raise _Down(type(exc).__name__) from exc

    def _read(self, name: str, customer: Customer) -> tuple[AuthContext, str, str] | None:
        self.stats["reads"] += 1
        raw = self._call(lambda: self._redis.get(self._key(name)))
        if raw is None:
            return None
        try:
            record = json.loads(self._ring.open(raw, name.encode()))
            if not isinstance(record, Mapping) or record.get("customer") != customer.id:
                raise InvalidContextError("the entry is for another customer")
            plugin, version = record["plugin"], record["version"]
            if not isinstance(plugin, str) or not isinstance(version, str):
                raise InvalidContextError("the entry has no plugin or version")
            context = AuthContext.from_record(record["context"], source="the Redis cache")
        except (UnsealError, InvalidContextError, ValueError, KeyError) as exc:
            log.warning(
                "the shared context of customer %r could not be used (%s); treated as a miss: "
                "check that every process has the same cache.keys",
                customer.id,
                exc,
            )
            return None
        return context, plugin, version

    def _usable(
        self,
        found: tuple[AuthContext, str, str] | None,
        avoid: str | None,
        adopt: Callable[[AuthContext, str, str | None], CachedContext],
    ) -> CachedContext | None:
        if found is None or found[2] == avoid:
            return None
        try:
            entry = adopt(*found)
        except InvalidContextError:  # already expired
            return None
        if time.monotonic() >= entry.expires_at:
            return None
        self.stats["adopted"] += 1
        return entry

    @staticmethod
    def _good(entry: CachedContext) -> bool:
        return time.monotonic() < entry.valid_until

    def _remember(self, name: str, key: object) -> None:
        if len(self._names) > 2 * self.maxsize:
            self._names.clear()  # notices for forgotten names then wait out front_ttl
        self._names[name] = key

    def _front(self, entry: CachedContext) -> CachedContext:
        """Serve the process's copy for ``front_ttl`` at most, then read Redis again."""
        entry.expires_at = min(entry.valid_until, time.monotonic() + self._front_ttl)
        return entry

    def _alone(
        self,
        stale: CachedContext | None,
        renew: bool,
        produce: Callable[[AuthContext | None], CachedContext],
        adopt: Callable[[AuthContext, str, str | None], CachedContext],
    ) -> CachedContext:
        """Without Redis: keep serving a copy that is still good; else ask the providers."""
        if stale is not None and not renew and self._good(stale):
            return self._front(adopt(stale.context, stale.plugin, stale.version))
        entry = produce(None if stale is None else stale.context)
        entry.version = None  # nobody else has it: anything Redis holds later is newer
        return self._front(entry)

    def _take_lock(self, name: str, token: str, deadline: float) -> bool:
        """Take the refresh lock (``True``), or wait until its holder stored a context
        (``False``). Raises ``ProviderTimeoutError`` past ``deadline``."""
        lock_key, key = self._lock_key(name), self._key(name)
        ttl = max(1, int(self._lock_ttl * 1000))
        before = self._call(lambda: self._redis.get(key))
        pause = _POLL_FIRST
        while True:
            if self._call(lambda: self._redis.set(lock_key, token, nx=True, px=ttl)):
                return True
            if time.monotonic() + pause > deadline:
                raise ProviderTimeoutError(
                    f"another process held the refresh lock of this customer for longer than "
                    f"the provider timeout (Redis {self._url}); it may have crashed, and its lock "
                    f"lapses within lock_ttl={self._lock_ttl:g}s. Nothing was cached: the next "
                    "request asks again"
                )
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
            now = self._call(lambda: self._redis.get(key))
            if now is not None and now != before:
                return False

    def _release_lock(self, name: str, token: str) -> None:
        try:
            self._release(keys=[self._lock_key(name)], args=[token])
        except self._errors as exc:
            self._fell_back(_Down(type(exc).__name__))

    def _sealed(self, name: str, customer: Customer, entry: CachedContext) -> tuple[bytes, int]:
        record = {
            "customer": customer.id,
            "plugin": entry.plugin,
            "version": entry.version,
            "context": entry.context.to_record(),
        }
        remaining = entry.context.remaining()
        ttl = 0 if remaining is None else max(1, int(remaining * 1000))
        return self._ring.seal(json.dumps(record).encode(), name.encode()), ttl

    def _write(self, name: str, customer: Customer, entry: CachedContext, token: str) -> None:
        value, ttl = self._sealed(name, customer, entry)
        notice = f"{name} {entry.version}"
        stored = self._call(
            lambda: self._store(
                keys=[self._key(name), self._lock_key(name)],
                args=[token, value, ttl, self._channel, notice],
            )
        )
        if not stored:
            log.warning(
                "the refresh lock of customer %r lapsed before its provider answered; the "
                "context was not shared (raise cache.lock_ttl to at least provider_timeout)",
                customer.id,
            )

    def _share(self, name: str, customer: Customer, entry: CachedContext) -> None:
        if entry.version is None:
            entry.version = secrets.token_hex(8)
        value, ttl = self._sealed(name, customer, entry)
        if ttl:
            self._call(lambda: self._redis.set(self._key(name), value, nx=True, px=ttl))
        else:
            self._call(lambda: self._redis.set(self._key(name), value, nx=True))

    # -- notices from other processes -----------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is not None:
            return
        with self._state_lock:
            if self._listener is not None:
                return
            self._listener = threading.Thread(
                target=self._listen_loop, daemon=True, name="asapp-auth-redis-events"
            )
            self._listener.start()
        # Notices published from now on reach this process (unless Redis is down).
        self._subscribed.wait(self._timeout)

    def _listen_loop(self) -> None:
        while not self._closed.is_set():
            pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        self._subscribed.set()  # Redis confirmed: nothing published is missed
                    elif message.get("type") == "message":
                        self._notice(message.get("data"))
            except self._errors:
                self._closed.wait(min(self._retry_after, 1.0) or 0.1)
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
        key = self._names.get(name)
        if key is None:
            return
        entry = self.get(key)
        if entry is not None and entry.version != version:
            with self._lock:
                if self._mirror.get(key) is entry:
                    self._mirror.pop(key, None)
                    self._entries.pop(key, None)

    def close(self) -> None:
        """Stop listening for other processes' notices and close the connections."""
        self._closed.set()
        if self._listener is not None:
            self._listener.join(timeout=2)
        self._redis.close()

    def __repr__(self) -> str:
        return (
            f"RedisContextCache({self._url}, namespace={self._namespace!r}, "
            f"front_ttl={self._front_ttl:g}, entries={len(self)})"
        )


def _shown_url(url: str) -> str:
    """The URL without a password."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':' if user else ''}<redacted>@{host}"
