"""Interleavings made with events, never with sleeps: a provider held until released, and a count
of the callers waiting on a provider call another caller started."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from asapp_auth import AuthContext, AuthPipeline

# Far more than any wait below needs: a broken test fails instead of hanging.
PATIENCE = 10


class Held:
    """A provider whose calls block once ``hold()`` was called, until ``release()``; it numbers
    its tokens and records each call's ``needs_refresh`` and thread."""

    def __init__(self, lifetime: float | None = None, fail: BaseException | None = None) -> None:
        self.lifetime = lifetime
        self.fail = fail
        self.calls: list[bool] = []
        self.threads: set[int] = set()
        self.entered = threading.Event()
        self._released = threading.Event()
        self._released.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Make the next calls block until ``release()``."""
        self.entered.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def __call__(self, needs_refresh: bool) -> AuthContext:
        with self._lock:
            self.calls.append(needs_refresh)
            n = len(self.calls)
            self.threads.add(threading.get_ident())
        self.entered.set()
        assert self._released.wait(PATIENCE), "the provider was never released"
        if self.fail is not None:
            raise self.fail
        return AuthContext({"Auth": {"Token": f"t{n}"}}, expires_in=self.lifetime)


class Joins:
    """Counts the callers of ``pipeline`` that wait on a provider call another one started."""

    def __init__(self, pipeline: AuthPipeline) -> None:
        self.count = 0
        self._changed = threading.Condition()
        claim = pipeline._claim

        def counted(*args: Any, **kwargs: Any) -> Any:
            flight, leader, current = claim(*args, **kwargs)
            if flight is not None and not leader:
                with self._changed:
                    self.count += 1
                    self._changed.notify_all()
            return flight, leader, current

        pipeline._claim = counted  # type: ignore[method-assign]

    def wait(self, n: int) -> None:
        """Block until ``n`` callers in all have joined a call in flight."""
        with self._changed:
            joined = self._changed.wait_for(lambda: self.count >= n, PATIENCE)
        assert joined, f"{self.count} of {n} callers joined the provider call"

    async def joined(self, n: int) -> None:
        """``wait(n)`` for a coroutine: the loop runs the callers meanwhile."""
        await asyncio.to_thread(self.wait, n)


def provider_threads() -> list[threading.Thread]:
    """The threads the pipeline runs providers in (off the event loop, refreshes ahead)."""
    return [t for t in threading.enumerate() if t.name == "asapp-auth-provider"]


def join_provider_threads() -> None:
    """Wait until every provider thread has ended, what it fetched cached."""
    for thread in provider_threads():
        thread.join(PATIENCE)
        assert not thread.is_alive(), "a provider thread did not end"


def run_threads(target: Callable[[], object], n: int) -> None:
    """Run ``target`` in ``n`` threads at once and wait for them all."""
    threads = [threading.Thread(target=target) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
        assert not thread.is_alive(), "a thread did not end"


class Clock:
    """The store's monotonic clock, moved only by the test: ``monkeypatch.setattr(
    "asapp_auth._store.time", clock)``. Expiry and refresh-ahead times are read on it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
