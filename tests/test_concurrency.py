"""Concurrency: one refresh for many threads and tasks, cancellation, loops, customer switches."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.errors import ProviderError, ProviderTimeoutError
from asapp_auth.testing import FakePlatform, RecordingProvider

ORIGIN = "https://api.chat.example"


class Slow:
    """A provider that takes ``delay`` seconds and counts calls by needs_refresh."""

    def __init__(self, delay: float = 0.05, lifetime: float | None = None) -> None:
        self.delay = delay
        self.lifetime = lifetime
        self.calls: list[bool] = []
        self.threads: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, needs_refresh: bool) -> AuthContext:
        with self.lock:
            self.calls.append(needs_refresh)
            n = len(self.calls)
            self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        return AuthContext({"Auth": {"Token": f"t{n}"}}, expires_in=self.lifetime)


def test_200_threads_on_an_expired_context_make_one_refresh(platform: FakePlatform) -> None:
    """200 threads requesting with an expired token cause exactly one needs_refresh call."""
    provider = RecordingProvider(platform, "alice", delay=0.05)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)
    barrier = threading.Barrier(200)
    results: list[Any] = []
    # Keep-alive as large as the pool: httpcore 1.0.9's sync pool can otherwise close a connection
    # it has handed to a waiting thread (encode/httpcore#1110), seen here as a ReadError.
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    with httpx.Client(auth=pipeline, limits=limits, timeout=30) as client:
        client.get(f"{platform.url}/v1/account")
        platform.expire()

        def worker() -> None:
            barrier.wait()
            results.append(client.get(f"{platform.url}/v1/account").json())

        threads = [threading.Thread(target=worker) for _ in range(200)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [{"customer": "alice"}] * 200
    assert provider.calls == [False, True]


def test_1000_tasks_on_an_expired_context_make_one_refresh(platform: FakePlatform) -> None:
    """1,000 asyncio tasks requesting with an expired token cause exactly one refresh."""
    provider = RecordingProvider(platform, "alice", delay=0.05)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)

    async def main() -> list[Any]:
        # httpcore's async pool is quadratic in queued requests: spread the tasks over clients.
        clients = [httpx.AsyncClient(auth=pipeline, timeout=60) for _ in range(25)]
        try:
            await clients[0].get(f"{platform.url}/v1/account")
            platform.expire()
            responses = await asyncio.gather(
                *(clients[i % 25].get(f"{platform.url}/v1/account") for i in range(1000))
            )
            return [r.json() for r in responses]
        finally:
            for client in clients:
                await client.aclose()

    assert asyncio.run(main()) == [{"customer": "alice"}] * 1000
    assert provider.calls == [False, True]


def test_threads_and_tasks_on_several_loops_share_one_refresh() -> None:
    """Threads and tasks on two event loops waiting together share one provider call."""
    provider = Slow(delay=0.3)
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    pipeline.get_context()
    tokens: list[str] = []
    lock = threading.Lock()

    def in_thread() -> None:
        token = pipeline.get_context(needs_refresh=True).token  # type: ignore[union-attr]
        with lock:
            tokens.append(token or "")

    def on_a_loop() -> None:
        async def main() -> list[AuthContext | None]:
            return await asyncio.gather(*(pipeline.aget_context(True) for _ in range(100)))

        for context in asyncio.run(main()):
            with lock:
                tokens.append(context.token or "")  # type: ignore[union-attr]

    workers = [threading.Thread(target=in_thread) for _ in range(50)]
    workers += [threading.Thread(target=on_a_loop) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(tokens) == 250
    assert set(tokens) == {"t2"}
    assert provider.calls == [False, True]


def test_async_provider_runs_off_the_event_loop() -> None:
    """From asyncio, a blocking provider runs in a worker thread and the loop keeps ticking."""
    provider = Slow(delay=0.3)
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> int:
        task = asyncio.create_task(ticker())
        await pipeline.aget_context()
        task.cancel()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert ticks >= 10
    assert loop_thread not in provider.threads


def test_cancelled_tasks_leave_nothing_locked() -> None:
    """Cancelling waiting tasks, the first one included, leaves the others their result."""
    provider = Slow(delay=0.3)
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)

    async def main() -> tuple[list[Any], AuthContext | None]:
        tasks = [asyncio.create_task(pipeline.aget_context()) for _ in range(100)]
        await asyncio.sleep(0.05)
        for task in tasks[::2]:  # the first task, which started the refresh, among them
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        # Nothing is left in flight or locked: a new call is served at once from the cache.
        started = time.monotonic()
        again = await asyncio.wait_for(pipeline.aget_context(), 0.1)
        assert time.monotonic() - started < 0.05
        return done, again

    done, again = asyncio.run(main())
    cancelled = [d for d in done if isinstance(d, asyncio.CancelledError)]
    served = [d for d in done if isinstance(d, AuthContext)]
    assert len(cancelled) == 50
    assert len(served) == 50
    assert {c.token for c in served} == {"t1"}
    assert again is not None
    assert again.token == "t1"
    assert provider.calls == [False]
    assert not pipeline._inflight


def test_cancelling_a_request_mid_refresh(platform: FakePlatform) -> None:
    """A request task cancelled while its refresh runs neither breaks others nor the next call."""
    provider = RecordingProvider(platform, "alice", delay=0.3)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)

    async def main() -> tuple[int, list[Any]]:
        async with httpx.AsyncClient(auth=pipeline) as client:
            doomed = asyncio.create_task(client.get(f"{platform.url}/v1/account"))
            others = [
                asyncio.create_task(client.get(f"{platform.url}/v1/account")) for _ in range(20)
            ]
            await asyncio.sleep(0.05)
            doomed.cancel()
            results = await asyncio.gather(*others)
            with pytest.raises(asyncio.CancelledError):
                await doomed
            after = await client.get(f"{platform.url}/v1/account")
            return after.status_code, [r.status_code for r in results]

    status, statuses = asyncio.run(main())
    assert status == 200
    assert statuses == [200] * 20
    assert provider.calls == [False]


def test_one_pipeline_across_repeated_asyncio_runs(platform: FakePlatform) -> None:
    """The same pipeline works across several asyncio.run() calls, refreshing on each loop."""
    provider = RecordingProvider(platform, "alice")
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)

    async def once() -> Any:
        async with httpx.AsyncClient(auth=pipeline) as client:
            return (await client.get(f"{platform.url}/v1/account")).json()

    for _ in range(3):
        assert asyncio.run(once()) == {"customer": "alice"}
        platform.expire()
    assert provider.calls == [False, True, True]


def _eventually(condition: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_async_waiters_time_out_on_a_hung_provider() -> None:
    """Tasks waiting on a provider that hangs get ProviderTimeoutError at provider_timeout."""
    release = threading.Event()

    def hung(needs_refresh: bool) -> dict[str, Any]:
        release.wait(5)
        return {"Auth": {"Token": "late"}}

    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=0.2)
    pipeline.load("alice", hung)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(pipeline.aget_context() for _ in range(100)), return_exceptions=True
        )

    started = time.monotonic()
    outcomes = asyncio.run(main())
    assert time.monotonic() - started < 1.0
    assert all(isinstance(o, ProviderTimeoutError) for o in outcomes)
    release.set()
    # The late answer is kept (a provider may have spent a refresh token for it): the next
    # request is served without asking again.
    assert _eventually(lambda: pipeline.cached() is not None)
    assert pipeline.get_context().token == "late"  # type: ignore[union-attr]


def test_a_failed_refresh_raises_to_every_waiter_and_the_next_call_retries() -> None:
    """Every waiter of a failed provider call gets the error; the next call asks again."""
    state = {"fail": True, "calls": 0}
    lock = threading.Lock()

    def provider(needs_refresh: bool) -> dict[str, Any]:
        with lock:
            state["calls"] += 1
        time.sleep(0.1)
        if state["fail"]:
            raise RuntimeError("down")
        return {"Auth": {"Token": "ok"}}

    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            pipeline.get_context()
        except ProviderError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 50
    assert state["calls"] == 1
    state["fail"] = False
    assert pipeline.get_context().token == "ok"  # type: ignore[union-attr]
    assert state["calls"] == 2


def test_no_request_after_a_switch_carries_the_old_customer(platform: FakePlatform) -> None:
    """Requests started after set_customer returns are all made as the new customer."""
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", RecordingProvider(platform, "alice", delay=0.01))
    switched = threading.Event()
    stop = threading.Event()
    wrong: list[Any] = []
    seen_after: list[str] = []

    with httpx.Client(auth=pipeline, limits=httpx.Limits(max_connections=20)) as client:

        def worker() -> None:
            while not stop.is_set():
                after = switched.is_set()
                customer = client.get(f"{platform.url}/v1/account").json().get("customer")
                if after:
                    seen_after.append(customer)
                    if customer != "bob":
                        wrong.append(customer)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        pipeline.set_customer("bob", RecordingProvider(platform, "bob", delay=0.05))
        switched.set()
        time.sleep(0.4)
        stop.set()
        for thread in threads:
            thread.join()
    assert seen_after
    assert wrong == []


def test_clear_racing_with_a_refresh_caches_nothing_for_the_old_customer() -> None:
    """A refresh that finishes after its customer was cleared is not cached."""
    provider = Slow(delay=0.2)
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    customer = pipeline.customer
    worker = threading.Thread(target=pipeline.get_context)
    worker.start()
    time.sleep(0.05)
    pipeline.clear()
    worker.join()
    assert customer is not None
    assert pipeline._cache.get(customer.cache_key) is None
