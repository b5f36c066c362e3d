"""The shared cache's queue of customers to forget in Redis: bounded, and losing no clear."""

from __future__ import annotations

import logging
import threading

import pytest

from asapp_auth._redis_forgets import Forgets


class _Redis:
    """forget_now for Forgets: records each name and thread; the cache's own thread waits for
    ``go`` (the test's thread, forgetting on overflow, does not)."""

    def __init__(self) -> None:
        self.caller = threading.get_ident()
        self.entered, self.go = threading.Event(), threading.Event()
        self.forgotten: list[tuple[str, int]] = []
        self.done = threading.Condition()

    def forget_now(self, name: str) -> None:
        if threading.get_ident() != self.caller:
            self.entered.set()
            assert self.go.wait(timeout=30)
        with self.done:
            self.forgotten.append((name, threading.get_ident()))
            self.done.notify_all()

    def wait_for(self, count: int) -> None:
        with self.done:
            assert self.done.wait_for(lambda: len(self.forgotten) >= count, timeout=30)


def test_a_full_queue_makes_the_caller_forget_and_drops_no_clear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With its thread stuck and ``limit`` names waiting, the next clear is forgotten in the
    caller's thread (one warning, naming no customer); a repeated name is queued once; every
    name is forgotten in the end."""
    redis, closed = _Redis(), threading.Event()
    forgets = Forgets(redis.forget_now, lambda name: True, closed, lambda stat: None, limit=3)
    forgets.put("ns:first")
    assert redis.entered.wait(timeout=30)  # the thread is inside forget_now, queue empty
    for name in ("ns:a", "ns:b", "ns:a", "ns:c"):
        forgets.put(name)
    with caplog.at_level(logging.WARNING, logger="asapp_auth.redis_cache"):
        forgets.put("ns:overflow")
        forgets.put("ns:overflow-2")
    redis.go.set()
    redis.wait_for(6)
    closed.set()
    names = [name for name, _ in redis.forgotten]
    assert sorted(names) == sorted(
        ["ns:first", "ns:a", "ns:b", "ns:c", "ns:overflow", "ns:overflow-2"]
    )
    here = threading.get_ident()
    by_caller = {name for name, thread in redis.forgotten if thread == here}
    assert {"ns:overflow", "ns:overflow-2"} <= by_caller
    assert "ns:first" not in by_caller
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "caller's thread" in warnings[0]
    assert "ns:" not in warnings[0]
