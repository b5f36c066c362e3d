"""Where contexts are kept between requests: the ``ContextCache`` interface and its in-memory form.

The pipeline decides what is fresh; a cache only stores ``CachedContext`` entries by key and
forgets the oldest ones past its size. A backend shared across processes (``SharedContextCache``,
for instance ``asapp_auth.redis_cache.RedisContextCache``) keeps such an in-process copy in front
and also coordinates refreshes: the pipeline hands it every fetch, and it decides whether the
fleet already has a fresh context or this process must produce one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import cachetools

from .context import AuthContext
from .customer import Customer
from .errors import ConfigurationError

__all__ = ["CachedContext", "ContextCache", "MemoryContextCache", "SharedContextCache"]


@dataclass(slots=True, eq=False)
class CachedContext:
    """A context with the monotonic times the pipeline serves it by.

    ``refresh_at``: from then on one caller refreshes it ahead while it is still served.
    ``expires_at``: from then on it is no longer served. Both are ``inf`` when it never expires.
    ``valid_until``: when the context itself stops being valid; later than ``expires_at`` only
    for the short-lived copy of a shared cache, which is then read again rather than refreshed.
    ``plugin`` names the provider that answered; ``version`` tells a shared cache's copies apart.
    """

    context: AuthContext
    plugin: str
    fetched_at: float
    refresh_at: float
    expires_at: float
    valid_until: float = -1.0
    version: str | None = field(default=None, repr=False)
    # The transport adapter's ready-to-send form of ``context``, made on first use.
    prepared: object = field(default=None, repr=False)
    # Set once a refresh ahead of expiry has been started for this entry, so it starts once.
    ahead_started: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.valid_until < 0:
            self.valid_until = self.expires_at


@runtime_checkable
class ContextCache(Protocol):
    """Storage for contexts. Methods are called from many threads at once."""

    def get(self, key: Hashable) -> CachedContext | None:
        """The entry stored under ``key``, or ``None``."""

    def set(self, key: Hashable, entry: CachedContext) -> None:
        """Store ``entry`` under ``key``, replacing any other."""

    def pop(self, key: Hashable) -> CachedContext | None:
        """Remove and return the entry under ``key``, if any."""

    def clear(self) -> None:
        """Forget every entry."""


@runtime_checkable
class SharedContextCache(ContextCache, Protocol):
    """A cache shared by many processes, which also decides who refreshes.

    ``get``/``set``/``pop``/``clear`` act on this process's copy. The pipeline calls
    ``coordinate`` instead of asking its providers whenever a customer's copy is missing or
    stale, from a thread that may block (never on an event loop).
    """

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
        """The entry to serve ``customer`` with, produced here only when nobody else has one.

        ``provider`` names what serves the customer (part of the shared key). ``stale`` is this
        process's last entry; ``renew=True`` means it must not be served again (expired,
        rejected, or refreshed ahead); ``rejected=True`` when the platform refused it, which no
        process may serve again even if no fresh one can be had. ``produce(previous, refresh)`` asks
        the providers, ``previous`` being the newest context known for the customer, with
        ``needs_refresh=refresh`` (at least ``renew``: the fleet's context may be the stale one);
        ``adopt(context, plugin, version)`` makes an entry of a context someone else produced.
        ``deadline``: the ``time.monotonic()`` past which waiting for another process stops.
        """

    def forget(self, customer: Customer, provider: str) -> None:
        """Drop ``customer``'s context everywhere: it was cleared or its session is gone."""


class _Bounded(cachetools.FIFOCache[Hashable, CachedContext]):
    """cachetools' FIFO bookkeeping, keeping a plain dict in step for lock-free reads."""

    def __init__(self, maxsize: int, mirror: dict[Hashable, CachedContext]) -> None:
        super().__init__(maxsize)
        self._mirror = mirror

    def popitem(self) -> tuple[Hashable, CachedContext]:
        key, value = super().popitem()
        self._mirror.pop(key, None)
        return key, value


class MemoryContextCache:
    """A bounded, thread-safe cache held in this process.

    Past ``maxsize`` entries, the one stored longest ago goes first (refreshing an entry stores
    it anew). Reads take no lock and run no Python code of ours beyond one call: a dict lookup,
    since the cached path of every request is a read. Writes are serialised, as cachetools
    caches are not thread-safe.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigurationError(f"cache maxsize must be a positive int, not {maxsize!r}")
        self._mirror: dict[Hashable, CachedContext] = {}
        self._entries = _Bounded(maxsize, self._mirror)
        self._lock = threading.Lock()

    @property
    def maxsize(self) -> int:
        return int(self._entries.maxsize)

    def get(self, key: Hashable) -> CachedContext | None:
        return self._mirror.get(key)

    @property
    def reader(self) -> Callable[[Hashable], CachedContext | None]:
        """``get`` as the plain dict lookup it is, for the cached path: no frame of ours."""
        return self._mirror.get

    def set(self, key: Hashable, entry: CachedContext) -> None:
        with self._lock:
            self._entries[key] = entry  # may evict the oldest, which leaves the mirror too
            self._mirror[key] = entry

    def pop(self, key: Hashable) -> CachedContext | None:
        with self._lock:
            self._mirror.pop(key, None)
            return self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._mirror.clear()

    def __len__(self) -> int:
        return len(self._mirror)

    def __repr__(self) -> str:
        return f"MemoryContextCache(maxsize={self.maxsize}, entries={len(self)})"
