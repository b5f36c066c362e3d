"""The plugin's token cache: one slot per key, and one token-endpoint call per slot at a time.

The client-credentials token is shared by every customer, so the pipeline's per-customer
single-flight is not enough: concurrent customers meet here, on the slot's lock, and the first one
fetches while the others wait and then take its token. Holding the slot lock across the HTTP call is
the point (the plugin runs in worker threads, never on an event loop); the cache-wide lock is only
held for dictionary work.

A customer that asks again for the token it was already given (``needs_refresh``, or a refresh
ahead of expiry once the token is past half its life) gets a new one; every other customer keeps
getting the newest token. So 100 customers rejected with the same token cost one call, not 100.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import cachetools

from ._response import TokenResponse

__all__ = ["CachedToken", "SlotBusy", "TokenCache"]


class SlotBusy(TimeoutError):
    """The token was still being fetched for another caller when the deadline came."""


@dataclass(frozen=True, slots=True)
class CachedToken:
    response: TokenResponse = field(repr=False)
    generation: int
    fetched_at: float
    expires_at: float

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.fetched_at


@dataclass(slots=True, eq=False)
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entry: CachedToken | None = None
    customer_id: str | None = None


class TokenCache:
    """Tokens by key (never holding a secret), with single-flight fetching per key."""

    def __init__(
        self,
        *,
        max_entries: int,
        expiry_margin: float,
        clock: Callable[[], float] = time.monotonic,
        max_customers: int = 100_000,
    ) -> None:
        self._max_entries = max_entries
        self._margin = expiry_margin
        self._clock = clock
        self._guard = threading.Lock()
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()
        # (customer id, key) -> generation last handed to that customer.
        self._served: cachetools.LRUCache[tuple[str, Hashable], int] = cachetools.LRUCache(
            max_customers
        )
        self._generation = 0
        self.fetches = 0

    def _slot(self, key: Hashable, customer_id: str | None) -> _Slot:
        with self._guard:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(customer_id=customer_id)
                self._prune()
            else:
                self._slots.move_to_end(key)
            return slot

    def _prune(self) -> None:
        # Oldest first; a slot being fetched is kept, or a second caller could fetch beside it.
        excess = len(self._slots) - self._max_entries
        for key in list(self._slots):
            if excess <= 0:
                break
            if not self._slots[key].lock.locked():
                del self._slots[key]
                excess -= 1

    def _usable(
        self,
        key: Hashable,
        entry: CachedToken | None,
        customer_id: str,
        needs_refresh: bool,
        now: float,
    ) -> bool:
        if entry is None:
            return False
        margin = min(self._margin, entry.lifetime * 0.1)
        if entry.expires_at - now <= margin:
            return False
        with self._guard:
            served = self._served.get((customer_id, key))
        if served == entry.generation:
            half_life = entry.fetched_at + entry.lifetime / 2
            return not needs_refresh and now < half_life
        return True

    def get(
        self,
        key: Hashable,
        customer_id: str,
        needs_refresh: bool,
        fetch: Callable[[], TokenResponse],
        *,
        owner: str | None = None,
        deadline: float | None = None,
    ) -> tuple[TokenResponse, float]:
        """The token for ``key`` and its remaining lifetime in seconds, fetching when needed.

        ``owner`` is the customer a per-customer key belongs to (for ``forget_customer``). A
        failed fetch raises and caches nothing; an older token stays for other customers.
        Waiting for another caller's fetch of the same token raises ``SlotBusy`` at
        ``deadline`` (``time.monotonic()``).
        """
        slot = self._slot(key, owner)
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not slot.lock.acquire(timeout=wait):
            raise SlotBusy
        try:
            now = self._clock()
            entry = slot.entry
            if not self._usable(key, entry, customer_id, needs_refresh, now):
                response = fetch()
                now = self._clock()
                with self._guard:
                    self._generation += 1
                    generation = self._generation
                    self.fetches += 1
                entry = slot.entry = CachedToken(
                    response, generation, now, now + response.expires_in
                )
            assert entry is not None
            with self._guard:
                self._served[(customer_id, key)] = entry.generation
            return entry.response, min(entry.response.expires_in, entry.expires_at - now)
        finally:
            slot.lock.release()

    def put(
        self, key: Hashable, response: TokenResponse, expires_at: float, *, owner: str | None
    ) -> None:
        """Store a token the app already holds (a login's) as if just fetched, though not
        counted in ``fetches``; no customer has been served it yet."""
        slot = self._slot(key, owner)
        with slot.lock:
            with self._guard:
                self._generation += 1
                generation = self._generation
            slot.entry = CachedToken(response, generation, self._clock(), expires_at)

    def newest(self, owner: str | None) -> TokenResponse | None:
        """The newest token held for ``owner`` (``None``: the shared tokens), expired or not."""
        with self._guard:
            entries = [
                s.entry
                for s in self._slots.values()
                if s.customer_id == owner and s.entry is not None
            ]
        return max(entries, key=lambda e: e.generation).response if entries else None

    def peek(self, key: Hashable) -> TokenResponse | None:
        """The token stored under ``key``, expired or not, without fetching."""
        with self._guard:
            slot = self._slots.get(key)
        return None if slot is None or slot.entry is None else slot.entry.response

    def forget_customer(self, customer_id: str) -> list[TokenResponse]:
        """Drop every token that belongs to ``customer_id``; return them (for revocation)."""
        with self._guard:
            keys = [k for k, s in self._slots.items() if s.customer_id == customer_id]
            slots = [self._slots.pop(k) for k in keys]
            for served in [s for s in self._served if s[0] == customer_id]:
                del self._served[served]
        return [s.entry.response for s in slots if s.entry is not None]

    def clear(self) -> None:
        with self._guard:
            self._slots.clear()
            self._served.clear()
