"""Slow and stuck providers: one call per customer at a time, late answers kept, threads bounded."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.errors import ProviderTimeoutError

ORIGIN = "https://api.chat.example"
ROOT = Path(__file__).resolve().parent.parent
# Far more than any wait below needs: a broken test fails instead of hanging.
PATIENCE = 10
PROVIDER_THREADS = 16  # the documented process-wide bound


class Stuck:
    """A provider that blocks until ``release`` is set; it counts its calls."""

    def __init__(self, token: str = "late") -> None:
        self.token = token
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, needs_refresh: bool) -> dict[str, Any]:
        self.calls += 1
        self.entered.set()
        self.release.wait(PATIENCE)
        return {"Auth": {"Token": self.token}}


def _provider_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "asapp-auth-provider"]


def _join_provider_threads() -> None:
    for thread in _provider_threads():
        thread.join(PATIENCE)


async def _until(wait: Callable[..., bool]) -> None:
    """Run the loop's other tasks until ``wait(timeout)`` (an event's, a semaphore's) returns
    true, within PATIENCE: a thread waits on it meanwhile."""
    assert await asyncio.to_thread(wait, timeout=PATIENCE)


def _tell_joins(pipeline: AuthPipeline) -> threading.Semaphore:
    """A semaphore released each time a caller joins a flight it did not start."""
    original = pipeline._claim
    joins = threading.Semaphore(0)

    def claim(*args: Any, **kwargs: Any) -> Any:
        flight, leader, current = original(*args, **kwargs)
        if flight is not None and not leader:
            joins.release()
        return flight, leader, current

    pipeline._claim = claim  # type: ignore[method-assign]
    return joins


def test_async_requests_after_a_timeout_wait_on_the_call_in_flight() -> None:
    """Under asyncio, requests after a timeout join the stuck call; a late answer is kept."""
    _join_provider_threads()
    provider = Stuck()
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=0.2)
    pipeline.load("alice", provider)
    joins = _tell_joins(pipeline)

    async def main() -> tuple[list[BaseException], AuthContext | None]:
        timeouts = []
        for _ in range(3):
            with pytest.raises(ProviderTimeoutError) as caught:
                await pipeline.aget_context()
            timeouts.append(caught.value)
        # The second and third requests waited on the first one's call.
        assert joins.acquire(blocking=False)
        assert joins.acquire(blocking=False)
        late = asyncio.ensure_future(pipeline.aget_context())
        await _until(joins.acquire)  # this one waits on it too
        provider.release.set()
        return timeouts, await late

    timeouts, context = asyncio.run(main())
    _join_provider_threads()
    assert context is not None
    assert context.token == "late"
    assert provider.calls == 1
    for error in timeouts:
        assert "answer will be kept for the next requests" in str(error)
        assert "Nothing was cached" not in str(error)
    assert pipeline.get_context().token == "late"  # type: ignore[union-attr]
    assert provider.calls == 1


def test_sync_requests_after_a_timeout_wait_on_the_call_in_flight() -> None:
    """In threads too: one provider call at a time, its late answer kept, its caller told."""
    provider = Stuck()
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=0.2)
    pipeline.load("alice", provider)
    leader_got: list[BaseException] = []

    def leader() -> None:
        try:
            pipeline.get_context()
        except ProviderTimeoutError as exc:
            leader_got.append(exc)

    thread = threading.Thread(target=leader)
    thread.start()
    try:
        assert provider.entered.wait(PATIENCE)
        for _ in range(2):
            with pytest.raises(ProviderTimeoutError, match="the provider call goes on"):
                pipeline.get_context()
    finally:
        provider.release.set()
        thread.join()
    assert provider.calls == 1
    assert len(leader_got) == 1
    assert "its answer is kept for the next requests" in str(leader_got[0])
    assert pipeline.get_context().token == "late"  # type: ignore[union-attr]
    assert provider.calls == 1


def test_when_every_provider_thread_is_taken_a_request_gets_a_timeout_saying_so() -> None:
    """With all 16 provider threads stuck, another customer's request times out, unasked."""
    _join_provider_threads()
    stuck = [Stuck(f"t{i}") for i in range(PROVIDER_THREADS)]
    waiting = Stuck("seventeenth")
    waiting.release.set()
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=0.5)
    customers = [pipeline.for_customer(f"c{i}", p) for i, p in enumerate(stuck)]
    other = pipeline.for_customer("c-other", waiting)

    async def main() -> BaseException:
        tasks = [asyncio.ensure_future(c.aget_context()) for c in customers]
        try:
            for provider in stuck:
                await _until(provider.entered.wait)
            with pytest.raises(ProviderTimeoutError) as caught:
                await other.aget_context()
            return caught.value
        finally:
            for provider in stuck:
                provider.release.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    error = asyncio.run(main())
    _join_provider_threads()
    assert f"all {PROVIDER_THREADS} provider threads of this process were taken" in str(error)
    assert "was not asked" in str(error)
    assert waiting.calls == 0  # given up unasked, not run once a thread freed
    assert other.get_context().token == "seventeenth"  # type: ignore[union-attr]
    assert waiting.calls == 1


def _prose(path: Path) -> str:
    return re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))


def test_the_docs_say_what_happens_to_a_late_answer() -> None:
    """README, Concepts and CHANGELOG say a late answer is kept, and name the thread bound."""
    for name in ("README.md", "docs/concepts.md", "CHANGELOG.md"):
        assert "kept for the next requests" in _prose(ROOT / name), name
    for name in ("README.md", "docs/concepts.md"):
        text = _prose(ROOT / name)
        assert "is not used" not in text, name
        assert f"{PROVIDER_THREADS} provider threads" in text, name
