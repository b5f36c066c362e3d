"""Closing a pipeline (close, aclose, with, async with) through on_pipeline_closed, and aclear."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from asapp_auth import AuthPipeline, Customer, hookimpl
from asapp_auth.errors import ConfigurationError

ORIGIN = "https://api.chat.example"


class Holder:
    """A plugin that holds something and records each release: thread and deadline."""

    def __init__(self) -> None:
        self.closed: list[tuple[int, float]] = []
        self.cleared: list[tuple[int, str]] = []

    @hookimpl
    def on_pipeline_closed(self, pipeline: AuthPipeline, deadline: float) -> None:
        self.closed.append((threading.get_ident(), deadline))

    @hookimpl
    def on_customer_cleared(self, customer: Customer) -> None:
        self.cleared.append((threading.get_ident(), customer.id))


class Failing:
    """A plugin whose release raises."""

    @hookimpl
    def on_pipeline_closed(self) -> None:
        raise RuntimeError("cannot let go")


class Stuck:
    """A plugin whose release waits for ``go``, past any deadline."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.entered = threading.Event()
        self.returned = threading.Event()

    @hookimpl
    def on_pipeline_closed(self) -> None:
        self.entered.set()
        self.go.wait(30)
        self.returned.set()


def test_leaving_with_closes_once_with_the_default_bound() -> None:
    """``with`` calls on_pipeline_closed once, in this thread, with a deadline 10 s ahead."""
    holder = Holder()
    with AuthPipeline(origins=[ORIGIN]) as pipeline:
        pipeline.register(holder)
        assert holder.closed == []
        before = time.monotonic()
    after = time.monotonic()
    assert len(holder.closed) == 1
    thread, deadline = holder.closed[0]
    assert thread == threading.get_ident()
    assert before + 10 <= deadline <= after + 10


def test_close_takes_its_bound_and_a_failing_plugin_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """close(timeout=) sets the deadline; a plugin raising is logged, the others still closed."""
    holder = Holder()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(holder, name="holder")
    pipeline.register(Failing(), name="failing")  # asked first: registered last
    before = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="asapp_auth"):
        pipeline.close(timeout=2.5)
    assert len(holder.closed) == 1
    assert before + 2.5 <= holder.closed[0][1] <= time.monotonic() + 2.5
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "the on_pipeline_closed hook of plugin 'failing' raised RuntimeError" in warned


def test_async_with_closes_off_the_event_loop() -> None:
    """``async with`` runs the plugins' release in a worker thread, never on the loop."""
    holder = Holder()

    async def main() -> int:
        async with AuthPipeline(origins=[ORIGIN]) as pipeline:
            pipeline.register(holder)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(holder.closed) == 1
    assert holder.closed[0][0] != loop_thread


def test_aclose_returns_by_its_bound_when_a_plugin_overruns_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aclose gives up waiting on a plugin stuck past the deadline, logging it; the loop goes on."""
    stuck = Stuck()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(stuck)

    async def main() -> None:
        await pipeline.aclose(timeout=0.1)

    try:
        with caplog.at_level(logging.WARNING, logger="asapp_auth"):
            asyncio.run(main())
        assert stuck.entered.is_set()
        assert not stuck.returned.is_set()  # aclose returned while the hook was still stuck
        assert any("did not return by its deadline" in r.getMessage() for r in caplog.records)
    finally:
        stuck.go.set()
    assert stuck.returned.wait(30)


def test_aclear_tells_the_plugins_off_the_event_loop() -> None:
    """aclear drops the customer at once and runs on_customer_cleared in a worker thread."""
    holder = Holder()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(holder)
    pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": "t"}})

    async def main() -> int:
        await pipeline.aclear()
        assert pipeline.customer is None
        assert [customer for _, customer in holder.cleared] == ["alice"]  # done when it returns
        await pipeline.aclear()  # already anonymous: nothing to tell
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(holder.cleared) == 1
    assert holder.cleared[0][0] != loop_thread


def test_a_close_timeout_above_the_cap_is_refused_and_closes_nothing() -> None:
    """close/aclose refuse a timeout above 300 s with ConfigurationError saying what to pass,
    before telling any plugin; 300 s itself is accepted."""
    holder = Holder()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(holder)
    with pytest.raises(ConfigurationError, match=r"timeout=1e\+09s.*at most 300s"):
        pipeline.close(timeout=1e9)
    with pytest.raises(ConfigurationError, match="at most 300s"):
        asyncio.run(pipeline.aclose(timeout=300.5))
    assert holder.closed == []
    pipeline.close(timeout=300)
    assert len(holder.closed) == 1
