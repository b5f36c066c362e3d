"""Where contexts are kept between requests: the ``ContextCache`` interface and its in-memory form.

The pipeline decides what is fresh; a cache only stores ``CachedContext`` entries by key and
forgets the least recently used ones past its size. A backend shared across processes implements
the same four methods.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import cachetools

from .context import AuthContext
from .errors import ConfigurationError

__all__ = ["CachedContext", "ContextCache", "MemoryContextCache"]


@dataclass(slots=True, eq=False)
class CachedContext:
    """A context with the monotonic times the pipeline serves it by.

    ``refresh_at``: from then on one caller refreshes it ahead while it is still served.
    ``expires_at``: from then on it is no longer served. Both are ``inf`` when it never expires.
    ``plugin`` names the provider that answered.
    """

    context: AuthContext
    plugin: str
    fetched_at: float
    refresh_at: float
    expires_at: float
    # The transport adapter's ready-to-send form of ``context``, made on first use.
    prepared: object = field(default=None, repr=False)
    # Set once a refresh ahead of expiry has been started for this entry, so it starts once.
    ahead_started: bool = field(default=False, repr=False)


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
