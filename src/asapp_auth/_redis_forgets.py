"""Customers cleared here, cleared for the whole fleet by one thread of the cache.

``clear()`` may be called on an event loop, so the cache only queues the customer's key name;
this thread runs the forget script (the entry goes, a tombstone stays, every process is told).
A customer whose shard was down is kept aside and cleared once it answers again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from ._redis_link import Down


class Forgets:
    """``forget_now(name)`` clears one name (raises ``Down``); ``up(name)`` says if its shard
    answers; ``closed`` stops the thread."""

    def __init__(
        self,
        forget_now: Callable[[str], object],
        up: Callable[[str], bool],
        closed: threading.Event,
        count: Callable[[str], None],
    ) -> None:
        self._forget_now, self._up, self._closed, self._count = forget_now, up, closed, count
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, name: str) -> None:
        self._queue.put(name)
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
            try:
                name = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if self._up(name):
                try:
                    self._forget_now(name)
                    continue
                except Down:
                    self._count("fallbacks")
            with self._lock:
                self._pending.add(name)
