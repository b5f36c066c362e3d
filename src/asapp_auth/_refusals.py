"""``Refusals``: the customers whose context the platform refused and nothing has replaced yet.

A refused context leaves the cache at once (it is never served again), so after a refresh that
failed the cache alone cannot tell the next fetch that the provider's last answer was refused.
This remembers it: the next fetch asks with ``needs_refresh=True`` and gets the refused context as
``previous`` (its ``state`` may hold what a refresh needs), until a fresh context is stored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from .cache import CachedContext

__all__ = ["Refusals"]


class Refusals:
    """At most ``maxsize`` refused entries by cache key; past that the oldest is forgotten (its
    customer's next ask then says ``needs_refresh=False``). Not thread-safe: the pipeline holds
    its lock around every call."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[Hashable, CachedContext] = OrderedDict()

    def add(self, key: Hashable, entry: CachedContext) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)

    def get(self, key: Hashable) -> CachedContext | None:
        return self._entries.get(key)

    def discard(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
