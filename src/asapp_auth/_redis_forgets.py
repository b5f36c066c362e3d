"""Customers cleared here, cleared for the whole fleet by one thread of the cache.

``clear()`` may be called on an event loop, so the cache only queues the customer's key name;
this thread runs the forget script (the entry goes, a tombstone stays, every process is told).
A customer whose shard was down is kept aside and cleared once it answers again.

The queue is bounded (``LIMIT`` names, each at most once: a forget still waiting covers a second
clear of the same customer). When it is full, a clear is not dropped: the caller runs that
customer's forget itself, as it would without a queue, and a warning says so once per backlog.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ._redis_link import Down

log = logging.getLogger("asapp_auth.redis_cache")

# Distinct customers waiting to be forgotten before callers forget theirs themselves.
LIMIT = 10_000


class Forgets:
    """``forget_now(name)`` clears one name (raises ``Down``); ``up(name)`` says if its shard
    answers; ``closed`` stops the thread."""

    def __init__(
        self,
        forget_now: Callable[[str], object],
        up: Callable[[str], bool],
        closed: threading.Event,
        count: Callable[[str], None],
        limit: int = LIMIT,
    ) -> None:
        self._forget_now, self._up, self._closed, self._count = forget_now, up, closed, count
        self._limit = limit
        # Insertion-ordered and without duplicates: the names still to forget, oldest first.
        self._waiting: dict[str, None] = {}
        self._ready = threading.Condition(threading.Lock())
        self._warned = False
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, name: str) -> None:
        """Queue ``name`` for the thread; forget it here when ``LIMIT`` names already wait."""
        with self._ready:
            full = name not in self._waiting and len(self._waiting) >= self._limit
            if not full:
                self._waiting[name] = None
                self._ready.notify()
            warn, self._warned = full and not self._warned, self._warned or full
        if full:
            if warn:
                log.warning(
                    "the shared cache has %d cleared customers still to forget in Redis; until "
                    "they are, each clear() forgets its customer in the caller's thread",
                    self._limit,
                )
            self._forget(name)
            return
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, daemon=True, name="asapp-auth-redis-forget"
                    )
                    self._thread.start()

    def replay(self) -> None:
        """Customers cleared while their shard was away are cleared once it is back."""
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, set()
        for name in pending:
            self.put(name)

    def after_fork(self) -> None:
        """A forked child has no thread of its parent's."""
        self._thread = None

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._ready:
                if not self._waiting:
                    self._warned = False  # the backlog is gone: warn again at the next one
                    self._ready.wait(timeout=1.0)
                    continue
                name = next(iter(self._waiting))
                del self._waiting[name]
            self._forget(name)

    def _forget(self, name: str) -> None:
        if self._up(name):
            try:
                self._forget_now(name)
                return
            except Down:
                self._count("fallbacks")
        with self._lock:
            self._pending.add(name)
