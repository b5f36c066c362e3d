"""Concurrency: one refresh for many threads and tasks, cancellation, loops, customer switches."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from interleave import PATIENCE, Held, Joins, join_provider_threads, run_threads

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.errors import ProviderError, ProviderTimeoutError
from asapp_auth.testing import FakePlatform, RecordingProvider

ORIGIN = "https://api.chat.example"


def test_200_threads_on_an_expired_context_make_one_refresh(platform: FakePlatform) -> None:
    """200 threads requesting with an expired token cause exactly one needs_refresh call."""
    provider = RecordingProvider(platform, "alice", delay=0.05)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)
    barrier = threading.Barrier(200)
    results: list[Any] = []
    # A client per thread, all on one pipeline: httpcore 1.0.9's sync pool shared by 200 threads
    # fails a request now and then with EBADF (encode/httpcore#1110), keep-alive as large as the
    # pool (50 or 200) or not. What is shared here is the pipeline.
    clients = [httpx.Client(auth=pipeline, timeout=30) for _ in range(200)]
    try:
        clients[0].get(f"{platform.url}/v1/account")
        platform.expire()

        def worker(client: httpx.Client) -> None:
            barrier.wait(PATIENCE)
            results.append(client.get(f"{platform.url}/v1/account").json())

        threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for client in clients:
            client.close()
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
    provider = Held()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    pipeline.get_context()
    provider.hold()  # the refresh runs until all 250 callers wait on it
    joins = Joins(pipeline)
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
    try:
        joins.wait(249)
    finally:
        provider.release()
        for worker in workers:
            worker.join(PATIENCE)
    assert len(tokens) == 250
    assert set(tokens) == {"t2"}
    assert provider.calls == [False, True]


def test_async_provider_runs_off_the_event_loop() -> None:
    """From asyncio, a blocking provider runs in a worker thread while the loop runs on."""
    provider = Held()
    provider.hold()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)

    async def main() -> tuple[int, AuthContext | None]:
        fetch = asyncio.ensure_future(pipeline.aget_context())
        # Only a loop the provider does not block gets here, to release it.
        assert await asyncio.to_thread(provider.entered.wait, PATIENCE)
        provider.release()
        return threading.get_ident(), await fetch

    loop_thread, context = asyncio.run(main())
    assert context is not None
    assert context.token == "t1"
    assert loop_thread not in provider.threads


def test_cancelled_tasks_leave_nothing_locked() -> None:
    """Cancelling waiting tasks, the first one included, leaves the others their result."""
    provider = Held()
    provider.hold()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    joins = Joins(pipeline)

    async def main() -> tuple[list[Any], AuthContext | None]:
        tasks = [asyncio.create_task(pipeline.aget_context()) for _ in range(100)]
        await joins.joined(99)  # the first task started the refresh, the others wait on it
        for task in tasks[::2]:  # the first task among them
            task.cancel()
        provider.release()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        # Nothing is left in flight or locked: a new call is served from the cache.
        again = await asyncio.wait_for(pipeline.aget_context(), PATIENCE)
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
    provider = RecordingProvider(platform, "alice")
    go = threading.Event()

    def held(needs_refresh: bool) -> AuthContext:
        go.wait(PATIENCE)
        return provider(needs_refresh)

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", held)
    joins = Joins(pipeline)

    async def main() -> tuple[int, list[Any]]:
        async with httpx.AsyncClient(auth=pipeline) as client:
            doomed = asyncio.create_task(client.get(f"{platform.url}/v1/account"))
            others = [
                asyncio.create_task(client.get(f"{platform.url}/v1/account")) for _ in range(20)
            ]
            try:
                await joins.joined(20)  # one of the 21 fetches, the others wait on it
                doomed.cancel()  # its wake-up is queued before any answer can be
            finally:
                go.set()
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


def test_async_waiters_time_out_on_a_hung_provider() -> None:
    """Tasks waiting on a provider that hangs get ProviderTimeoutError at provider_timeout."""
    hung = Held()
    hung.hold()  # released only once every task has its outcome
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=0.2)
    pipeline.load("alice", hung)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(pipeline.aget_context() for _ in range(100)), return_exceptions=True
        )

    try:
        outcomes = asyncio.run(main())
    finally:
        hung.release()
    assert all(isinstance(o, ProviderTimeoutError) for o in outcomes), outcomes[:3]
    # The late answer is kept (a provider may have spent a refresh token for it): the next
    # request is served without asking again.
    join_provider_threads()
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]
    assert hung.calls == [False]


def test_a_failed_refresh_raises_to_every_waiter_and_the_next_call_retries() -> None:
    """Every waiter of a failed provider call gets the error; the next call asks again."""
    provider = Held(fail=RuntimeError("down"))
    provider.hold()  # fails only once all 50 callers wait on it
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    joins = Joins(pipeline)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            pipeline.get_context()
        except ProviderError as exc:
            errors.append(exc)

    def release_once_joined() -> None:
        try:
            joins.wait(49)
        finally:
            provider.release()

    releasing = threading.Thread(target=release_once_joined)
    releasing.start()
    run_threads(worker, 50)
    releasing.join(PATIENCE)
    assert len(errors) == 50
    assert provider.calls == [False]
    provider.fail = None
    assert pipeline.get_context().token == "t2"  # type: ignore[union-attr]
    assert provider.calls == [False, False]


def test_no_request_after_a_switch_carries_the_old_customer(platform: FakePlatform) -> None:
    """Requests started after set_customer returns are all made as the new customer."""
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", RecordingProvider(platform, "alice", delay=0.01))
    switched = threading.Event()
    stop = threading.Event()
    # Every worker has made two requests before the switch, and two begun after it, before
    # the test stops them; they keep requesting while set_customer runs.
    before, after = threading.Barrier(17), threading.Barrier(17)
    wrong: list[Any] = []
    seen_after: list[str] = []
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)  # httpcore#1110

    with httpx.Client(auth=pipeline, limits=limits) as client:

        def worker() -> None:
            made = made_after = 0
            while not stop.is_set():
                was_after = switched.is_set()
                customer = client.get(f"{platform.url}/v1/account").json().get("customer")
                made += 1
                if made == 2:
                    before.wait(PATIENCE)
                if was_after:
                    seen_after.append(customer)
                    if customer != "bob":
                        wrong.append(customer)
                    made_after += 1
                    if made_after == 2:
                        after.wait(PATIENCE)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        try:
            before.wait(PATIENCE)
            pipeline.set_customer("bob", RecordingProvider(platform, "bob", delay=0.05))
            switched.set()
            after.wait(PATIENCE)
        except BaseException:
            before.abort()  # (aborting a barrier that tripped could fail its waking parties)
            after.abort()
            raise
        finally:
            stop.set()
            for thread in threads:
                thread.join(PATIENCE)
    assert len(seen_after) >= 32
    assert wrong == []


def test_clear_racing_with_a_refresh_caches_nothing_for_the_old_customer() -> None:
    """A refresh that finishes after its customer was cleared is not cached."""
    provider = Held()
    provider.hold()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    customer = pipeline.customer
    worker = threading.Thread(target=pipeline.get_context)
    worker.start()
    try:
        assert provider.entered.wait(PATIENCE)  # the refresh is under way
        pipeline.clear()
    finally:
        provider.release()
        worker.join(PATIENCE)
    assert provider.calls == [False]
    assert customer is not None
    assert pipeline._cache.get(customer.cache_key) is None
