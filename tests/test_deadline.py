"""The deadline the pipeline gives ``provide_context``: the call's start plus provider_timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from asapp_auth import AuthContext, AuthPipeline, Customer, hookimpl

ORIGIN = "https://api.chat.example"


class Deadlines:
    """A provider plugin that records the deadline it is given."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    @hookimpl
    def provide_context(self, customer: Customer, deadline: float) -> AuthContext:
        self.seen.append(deadline)
        return AuthContext({"Auth": {"Token": f"t-{customer.id}"}})


class OptionalDeadline:
    """A provider that may be called with or without a deadline."""

    def __init__(self) -> None:
        self.seen: list[float | None] = []

    @hookimpl
    def provide_context(self, customer: Customer, deadline: float | None = None) -> AuthContext:
        self.seen.append(deadline)
        return AuthContext({"Auth": {"Token": "optional"}})


class NoDeadline:
    """A provider that does no I/O and takes no deadline."""

    @hookimpl
    def provide_context(self, customer: Customer) -> AuthContext:
        return AuthContext({"Auth": {"Token": "plain"}})


def test_a_sync_provider_gets_the_call_start_plus_provider_timeout() -> None:
    """get_context hands the provider an absolute monotonic deadline provider_timeout ahead."""
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=7.5)
    plugin = Deadlines()
    pipeline.register(plugin)
    pipeline.load("alice")
    before = time.monotonic()
    assert pipeline.get_context() is not None
    after = time.monotonic()
    assert len(plugin.seen) == 1
    assert before + 7.5 <= plugin.seen[0] <= after + 7.5


def test_an_async_provider_gets_the_same_deadline() -> None:
    """aget_context runs the provider in a worker thread with the flight's deadline."""
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=3.0)
    plugin = Deadlines()
    pipeline.register(plugin)
    pipeline.load("alice")

    async def main() -> tuple[float, float]:
        before = time.monotonic()
        await asyncio.gather(*(pipeline.aget_context() for _ in range(20)))
        return before, time.monotonic()

    before, after = asyncio.run(main())
    assert len(plugin.seen) == 1  # twenty callers, one call
    assert before + 3.0 <= plugin.seen[0] <= after + 3.0


@pytest.mark.parametrize("plugin", [OptionalDeadline(), NoDeadline()], ids=type)
def test_providers_may_take_the_deadline_with_a_default_or_not_at_all(plugin: Any) -> None:
    """A provider declaring deadline=None is given it; one without the parameter still answers."""
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(plugin)
    pipeline.load("alice")
    context = pipeline.get_context()
    assert context is not None
    if isinstance(plugin, OptionalDeadline):
        assert plugin.seen != [None]
        assert isinstance(plugin.seen[0], float)
    else:
        assert context.token == "plain"
