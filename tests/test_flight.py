"""Single flight under failure: finished flights, each waiter's own error, refusals remembered."""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from asapp_auth import AuthContext, AuthPipeline, Customer, hookimpl
from asapp_auth._flight import Flight
from asapp_auth.errors import LoginRequiredError, ProviderError
from asapp_auth.testing import FakePlatform

ORIGIN = "https://api.chat.example"
# Far more than any wait below needs: a broken test fails instead of hanging.
PATIENCE = 10


class FailsFirst:
    """A provider whose first call raises and later calls answer; it counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, needs_refresh: bool) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            raise RuntimeError("down")
        return {"Auth": {"Token": "t-ok"}}


def _hold_after_first_failure(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """Make the first ``Flight.fail`` pause once its waiters know, until ``go`` is set."""
    original = Flight.fail
    failed, go = threading.Event(), threading.Event()

    def fail(self: Flight[Any], error: BaseException) -> bool:
        outcome = original(self, error)
        if not failed.is_set():
            failed.set()
            go.wait(PATIENCE)
        return outcome

    monkeypatch.setattr(Flight, "fail", fail)
    return failed, go


def test_a_request_arriving_as_a_fetch_fails_asks_the_provider_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request that comes while a failed fetch tells its waiters gets its own provider call."""
    failed, go = _hold_after_first_failure(monkeypatch)
    provider = FailsFirst()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    first: list[BaseException] = []

    def leader() -> None:
        try:
            pipeline.get_context()
        except ProviderError as exc:
            first.append(exc)

    thread = threading.Thread(target=leader)
    thread.start()
    try:
        assert failed.wait(PATIENCE)
        context = pipeline.get_context()  # the failing flight is still telling its waiters
    finally:
        go.set()
        thread.join()
    assert context is not None
    assert context.token == "t-ok"
    assert provider.calls == 2
    assert len(first) == 1


def test_a_task_retrying_at_once_after_a_failed_fetch_asks_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under asyncio, an immediate retry after a failure is a new ask, not the old error."""
    _, go = _hold_after_first_failure(monkeypatch)
    provider = FailsFirst()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)

    async def main() -> AuthContext | None:
        with pytest.raises(ProviderError):
            await pipeline.aget_context()
        try:
            return await pipeline.aget_context()  # the failing thread has not finished yet
        finally:
            go.set()

    context = asyncio.run(main())
    assert context is not None
    assert context.token == "t-ok"
    assert provider.calls == 2


def test_a_login_that_failed_is_not_joined_by_the_next_request(
    monkeypatch: pytest.MonkeyPatch, platform: FakePlatform
) -> None:
    """A login whose handler declined is never joined: the next request asks the handler anew."""
    failed, go = _hold_after_first_failure(monkeypatch)
    asked: list[str] = []

    class Declines:
        @hookimpl
        def on_login_required(self, reason: str) -> bool:
            asked.append(reason)
            return False

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.register(Declines())
    outcomes: list[int] = []

    with httpx.Client(auth=pipeline) as client:

        def first() -> None:
            try:
                client.get(f"{platform.url}/v1/account")
            except LoginRequiredError:
                outcomes.append(1)

        thread = threading.Thread(target=first)
        thread.start()
        try:
            assert failed.wait(PATIENCE)
            with pytest.raises(LoginRequiredError):
                client.get(f"{platform.url}/v1/account")
        finally:
            go.set()
            thread.join()
    assert outcomes == [1]
    assert asked == ["anonymous", "anonymous"]


def _count_joins(pipeline: AuthPipeline, others: int) -> threading.Event:
    """An event set once ``others`` callers have joined a flight they did not start."""
    original = pipeline._claim
    joined = [0]
    lock = threading.Lock()
    everyone = threading.Event()

    def claim(*args: Any, **kwargs: Any) -> Any:
        flight, leader, current = original(*args, **kwargs)
        if flight is not None and not leader:
            with lock:
                joined[0] += 1
                if joined[0] >= others:
                    everyone.set()
        return flight, leader, current

    pipeline._claim = claim  # type: ignore[method-assign]
    return everyone


def _fails_once_everyone_joined() -> tuple[Callable[[bool], dict[str, Any]], list[int], Any]:
    """A provider that raises, once the event it returns is set; and its call count."""
    calls = [0]
    ready = threading.Event()

    def provider(needs_refresh: bool) -> dict[str, Any]:
        calls[0] += 1
        assert ready.wait(PATIENCE)
        raise RuntimeError("down")

    return provider, calls, ready


def _check_own_errors(errors: list[BaseException], waiters: int) -> int:
    """Every waiter's error is its own object of one type, message and cause; the longest
    traceback's frame count."""
    assert len(errors) == waiters
    assert all(type(e) is ProviderError for e in errors)
    assert len({id(e) for e in errors}) == waiters
    assert len({str(e) for e in errors}) == 1
    causes = {id(e.__cause__) for e in errors}
    assert len(causes) == 1
    assert isinstance(errors[0].__cause__, RuntimeError)
    return max(len(traceback.extract_tb(e.__traceback__)) for e in errors)


def test_500_tasks_waiting_on_a_failed_fetch_each_get_their_own_error() -> None:
    """Each of 500 tasks gets its own exception, with a traceback of its own frames."""
    provider, calls, ready = _fails_once_everyone_joined()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    everyone = _count_joins(pipeline, 499)

    async def main() -> list[Any]:
        tasks = [asyncio.ensure_future(pipeline.aget_context()) for _ in range(500)]
        # The joins happen on this loop, which runs them while a thread waits for the last.
        assert await asyncio.to_thread(everyone.wait, PATIENCE)
        ready.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    frames = _check_own_errors(asyncio.run(main()), 500)
    assert calls == [1]
    assert frames < 40  # a few per waiter and the provider's; one shared error had over 2,000


def test_100_threads_waiting_on_a_failed_fetch_each_get_their_own_error() -> None:
    """Each of 100 threads gets its own exception, with a traceback of its own frames."""
    provider, calls, ready = _fails_once_everyone_joined()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    everyone = _count_joins(pipeline, 99)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            pipeline.get_context()
        except ProviderError as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for thread in threads:
        thread.start()
    assert everyone.wait(PATIENCE)
    ready.set()
    for thread in threads:
        thread.join()
    frames = _check_own_errors(errors, 100)
    assert calls == [1]
    assert frames < 40


def test_an_error_type_that_cannot_be_rebuilt_still_reaches_every_waiter() -> None:
    """An exception whose type cannot be built from its arguments is raised as it is."""

    class Coded(ProviderError):
        def __init__(self, message: str, *, code: int) -> None:
            super().__init__(message)
            self.code = code

        def __new__(cls, message: str, *, code: int) -> Coded:
            return super().__new__(cls, message)

    error = Coded("refused", code=7)
    flight: Flight[int] = Flight(PATIENCE, TimeoutError)
    flight.fail(error)
    for _ in range(2):
        with pytest.raises(Coded) as caught:
            flight.wait()
        assert caught.value is error


class RefreshFromPrevious:
    """A plugin with a token cache of its own, as the OAuth2 plugin has: without
    ``needs_refresh`` it hands back the token it gave last, refused or not."""

    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform
        self.token: str | None = None
        self.calls: list[tuple[bool, str | None]] = []
        self.down = False

    @hookimpl
    def provide_context(
        self, customer: Customer, needs_refresh: bool, previous: AuthContext | None
    ) -> dict[str, Any]:
        self.calls.append((needs_refresh, None if previous is None else previous.token))
        if self.down:
            raise RuntimeError("token endpoint down")
        if needs_refresh or self.token is None:
            self.token = self.platform.issue_token(customer.id)
        return {"Auth": {"Token": self.token}}


def test_after_a_refused_context_fails_to_refresh_the_next_ask_is_a_refresh(
    platform: FakePlatform,
) -> None:
    """A refusal is remembered past a failed refresh: the next ask says needs_refresh=True."""
    plugin = RefreshFromPrevious(platform)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.register(plugin)
    pipeline.load("alice")
    url = f"{platform.url}/v1/account"
    with httpx.Client(auth=pipeline) as client:
        assert client.get(url).status_code == 200
        refused = plugin.token
        platform.expire()
        plugin.down = True
        with pytest.raises(ProviderError):
            client.get(url)
        plugin.down = False
        assert client.get(url).json() == {"customer": "alice"}
        sent = len(platform.requests_to("/v1/account"))
        # Replaced by a fresh context: the refusal is forgotten.
        pipeline._cache.pop(pipeline.customer.cache_key)  # type: ignore[union-attr]
        assert client.get(url).status_code == 200
    assert plugin.calls == [(False, None), (True, refused), (True, refused), (False, None)]
    assert sent == 3  # no extra round trip with the refused token
