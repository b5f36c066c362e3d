"""The pipeline's customer state, context cache, expiry rules and provider errors."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from interleave import PATIENCE, Clock, Held, join_provider_threads

from asapp_auth import AuthContext, AuthPipeline, MemoryContextCache, hookimpl
from asapp_auth.errors import (
    ConfigurationError,
    InvalidContextError,
    LoginRequiredError,
    NoProviderError,
    ProviderError,
    ProviderTimeoutError,
)

ORIGIN = "https://api.chat.example"


class Counter:
    """A provider that counts its calls and hands out numbered tokens; with a ``clock``, each
    call takes ``delay`` seconds on it."""

    def __init__(
        self,
        lifetime: float | None = None,
        delay: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.calls: list[bool] = []
        self.lifetime = lifetime
        self.delay = delay
        self.clock = clock
        self.lock = threading.Lock()

    def __call__(self, needs_refresh: bool) -> AuthContext:
        with self.lock:
            self.calls.append(needs_refresh)
            n = len(self.calls)
        if self.clock is not None:
            self.clock.advance(self.delay)
        return AuthContext({"Auth": {"Token": f"t{n}"}}, expires_in=self.lifetime)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock the store reads expiry times on, moved only by the test."""
    clock = Clock()
    monkeypatch.setattr("asapp_auth._store.time", clock)
    return clock


def test_anonymous_by_default_and_after_clear() -> None:
    """A new pipeline is anonymous; clear() returns to anonymous; no context then."""
    pipeline = AuthPipeline(origins=[ORIGIN])
    assert pipeline.customer is None
    assert pipeline.get_context() is None
    pipeline.load("alice", Counter())
    assert pipeline.customer is not None
    assert pipeline.customer.id == "alice"
    pipeline.clear()
    assert pipeline.customer is None
    assert pipeline.get_context() is None


def test_load_is_for_start_up_only() -> None:
    """load() may be called once; later changes go through set_customer()."""
    pipeline = AuthPipeline(origins=[ORIGIN])
    assert pipeline.load() is None
    with pytest.raises(ConfigurationError, match="set_customer"):
        pipeline.load("alice", Counter())
    with pytest.raises(ConfigurationError, match="customer_id"):
        AuthPipeline(origins=[ORIGIN]).load(None, Counter())


def test_context_is_cached_until_refresh_is_asked() -> None:
    """A context with no expiry is served from the cache until needs_refresh=True."""
    provider = Counter()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]
    assert pipeline.get_context(needs_refresh=True).token == "t2"  # type: ignore[union-attr]
    assert pipeline.get_context().token == "t2"  # type: ignore[union-attr]
    assert provider.calls == [False, True]


def test_expired_context_is_refetched_with_needs_refresh(clock: Clock) -> None:
    """Past its expiry (minus the margin), a context is fetched again with needs_refresh=True."""
    provider = Counter(lifetime=300)
    pipeline = AuthPipeline(origins=[ORIGIN], expiry_margin=100, refresh_ahead=0)
    pipeline.load("alice", provider)
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]
    clock.advance(269.5)  # the margin is capped at a tenth of the lifetime: expired at 270 s
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]
    clock.advance(0.5)
    assert pipeline.get_context().token == "t2"  # type: ignore[union-attr]
    assert provider.calls == [False, True]


def test_expiry_counts_from_when_the_provider_was_asked(clock: Clock) -> None:
    """A slow provider's lifetime is counted from the call, not from its answer."""
    provider = Counter(lifetime=50, delay=30, clock=clock)
    pipeline = AuthPipeline(origins=[ORIGIN], expiry_margin=0, refresh_ahead=0, provider_timeout=60)
    pipeline.load("alice", provider)
    pipeline.get_context()
    clock.advance(25)  # 55 s after the provider was asked, 25 s after it answered
    provider.delay = 0
    pipeline.get_context()
    assert provider.calls == [False, True]


def test_refresh_ahead_serves_the_valid_context_while_one_caller_refreshes(
    clock: Clock,
) -> None:
    """In the refresh-ahead window the old context is served at once and refreshed once."""
    provider = Held(lifetime=100)
    pipeline = AuthPipeline(origins=[ORIGIN], expiry_margin=0, refresh_ahead=60)
    pipeline.load("alice", provider)
    pipeline.get_context()
    provider.hold()  # the refresh ahead runs until released: nobody may wait for it
    clock.advance(74.5)  # refresh_ahead is capped at a quarter of the lifetime: window from 75 s
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]
    assert provider.calls == [False]
    clock.advance(0.5)
    tokens = {pipeline.get_context().token for _ in range(50)}  # type: ignore[union-attr]
    assert provider.entered.wait(PATIENCE)  # the refresh ahead is under way, held ...
    tokens |= {pipeline.get_context().token for _ in range(50)}  # type: ignore[union-attr]
    assert tokens == {"t1"}  # ... and every caller got the valid context without waiting
    provider.release()
    join_provider_threads()
    assert pipeline.get_context().token == "t2"  # type: ignore[union-attr]
    assert provider.calls == [False, True]


def test_failed_refresh_ahead_keeps_serving_and_logs_once(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    """A failed early refresh leaves the valid context in use and is logged once."""
    state = {"fail": False, "n": 0}

    def provider(needs_refresh: bool) -> AuthContext:
        state["n"] += 1
        if state["fail"]:
            raise RuntimeError("token service down")
        return AuthContext({"Auth": {"Token": "first"}}, expires_in=100)

    pipeline = AuthPipeline(origins=[ORIGIN], expiry_margin=0, refresh_ahead=50)
    pipeline.load("alice", provider)
    pipeline.get_context()
    state["fail"] = True
    clock.advance(80)  # in the refresh-ahead window, from 75 s
    with caplog.at_level(logging.WARNING, logger="asapp_auth"):
        assert pipeline.get_context().token == "first"  # type: ignore[union-attr]
        join_provider_threads()  # the refresh ahead has failed
        for _ in range(20):
            assert pipeline.get_context().token == "first"  # type: ignore[union-attr]
        join_provider_threads()
    warnings = [r for r in caplog.records if "ahead of its expiry failed" in r.getMessage()]
    assert len(warnings) == 1
    assert state["n"] == 2


def test_failed_refresh_caches_nothing_and_the_next_call_retries() -> None:
    """A provider error reaches the caller, nothing is cached, and the next call asks again."""
    provider = Counter()
    boom = {"on": True}

    def flaky(needs_refresh: bool) -> AuthContext:
        if boom["on"]:
            raise ConnectionError("site down")
        return provider(needs_refresh)

    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", flaky)
    with pytest.raises(ProviderError, match=r"context_provider of customer 'alice'") as caught:
        pipeline.get_context()
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert caught.value.customer_id == "alice"
    boom["on"] = False
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]


def test_failed_forced_refresh_keeps_the_cache_unpoisoned() -> None:
    """A failed needs_refresh call neither caches its error nor loses the good context."""
    calls: list[bool] = []

    def provider(needs_refresh: bool) -> dict[str, Any]:
        calls.append(needs_refresh)
        if needs_refresh:
            return {"Auth": {"Token": 5}}
        return {"Auth": {"Token": "good"}}

    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    assert pipeline.get_context().token == "good"  # type: ignore[union-attr]
    with pytest.raises(InvalidContextError, match=r"Auth\.Token"):
        pipeline.get_context(needs_refresh=True)
    assert pipeline.get_context().token == "good"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("returned", "error", "words"),
    [
        ("a token", InvalidContextError, "str, not a context mapping"),
        ({}, InvalidContextError, "empty context"),
        ({"Auth": {"Token": ["x"]}}, InvalidContextError, "Auth.Token"),
        (None, NoProviderError, "no provider answered"),
    ],
)
def test_bad_provider_values_raise_typed_errors(
    returned: object, error: type[Exception], words: str
) -> None:
    """A provider's wrong type, empty answer or None gives a typed error naming the customer."""
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", lambda needs_refresh: returned)
    with pytest.raises(error, match=words) as caught:
        pipeline.get_context()
    assert "alice" in str(caught.value)


def test_a_plugin_returning_a_coroutine_is_reported_by_name() -> None:
    """A provide_context impl that returns an awaitable is refused, naming the plugin."""

    class Sneaky:
        @hookimpl
        def provide_context(self, customer: Any) -> Any:
            async def later() -> dict[str, Any]:
                return {}

            return later()

    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(Sneaky(), name="sneaky")
    pipeline.set_customer("alice")
    with pytest.raises(ProviderError, match="plugin 'sneaky' returned an awaitable"):
        pipeline.get_context()


def test_slow_sync_provider_times_out_and_its_answer_is_kept_for_the_next_request(
    clock: Clock,
) -> None:
    """A provider answering after provider_timeout gives ProviderTimeoutError to the request that
    waited; its answer (which may have cost a rotated refresh token) serves the next one."""
    provider = Counter(delay=30.5, clock=clock)
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=30)
    pipeline.load("alice", provider)
    with pytest.raises(ProviderTimeoutError, match="kept for the next requests"):
        pipeline.get_context()
    provider.delay = 0
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]


def test_waiters_time_out_while_a_sync_provider_hangs() -> None:
    """Threads waiting on a hung provider give up at provider_timeout, while it still hangs."""
    hung = Held()
    hung.hold()
    pipeline = AuthPipeline(origins=[ORIGIN], provider_timeout=0.2)
    pipeline.load("alice", hung)
    outcome: list[BaseException] = []

    def lead() -> None:
        try:
            pipeline.get_context()
        except ProviderTimeoutError as exc:
            outcome.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    try:
        assert hung.entered.wait(PATIENCE)
        # Released only once this wait has ended: a waiter that outlived provider_timeout would
        # wait PATIENCE and get the provider's failure instead.
        with pytest.raises(ProviderTimeoutError, match="the provider call goes on"):
            pipeline.get_context()
    finally:
        hung.release()
        leader.join(PATIENCE)
    assert len(outcome) == 1
    assert hung.calls == [False]


def test_switching_customers_drops_the_old_context() -> None:
    """After set_customer or clear, the previous customer's context is neither served nor kept."""
    cache = MemoryContextCache()
    alice, bob = Counter(), Counter()
    pipeline = AuthPipeline(origins=[ORIGIN], cache=cache)
    pipeline.load("alice", alice)
    pipeline.get_context()
    assert len(cache) == 1
    pipeline.set_customer("bob", bob)
    assert len(cache) == 0
    assert pipeline.get_context().token == "t1"  # type: ignore[union-attr]
    assert bob.calls == [False]
    pipeline.clear()
    assert len(cache) == 0


def test_setting_the_same_customer_again_keeps_its_context() -> None:
    """set_customer with the same id and provider is not a switch."""
    provider = Counter()
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", provider)
    pipeline.get_context()
    pipeline.set_customer("alice", provider)
    pipeline.get_context()
    assert provider.calls == [False]


def test_provider_may_say_the_session_is_gone() -> None:
    """LoginRequiredError from a provider reaches get_context's caller as it is."""

    def gone(needs_refresh: bool) -> None:
        raise LoginRequiredError("session gone", customer_id="alice")

    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.load("alice", gone)
    with pytest.raises(LoginRequiredError, match="session gone"):
        pipeline.get_context()


def test_for_customer_shares_plugins_and_cache_per_customer() -> None:
    """for_customer binds one customer; many customers share the pipeline's plugins and cache."""
    asked: list[str] = []

    class PerCustomer:
        @hookimpl
        def provide_context(self, customer: Any) -> dict[str, Any]:
            asked.append(customer.id)
            return {"Auth": {"Token": f"for-{customer.id}"}}

    cache = MemoryContextCache()
    pipeline = AuthPipeline(origins=[ORIGIN], cache=cache)
    pipeline.register(PerCustomer())
    auths = [pipeline.for_customer(f"c{i}") for i in range(50)]
    for auth in auths + auths:
        assert auth.get_context().token == f"for-{auth.customer.id}"  # type: ignore[union-attr]
    assert len(asked) == 50
    assert len(cache) == 50
    assert pipeline.customer is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"origins": "https://a.example"}, "list of origins"),
        ({"origins": ["ftp://a.example"]}, "http:// or https://"),
        ({"origins": ["https://a.example/path"]}, "scheme://host"),
        ({"origins": ["https://user:pw@a.example"]}, "credentials"),
        ({"origins": [ORIGIN], "provider_timeout": 0}, "provider_timeout"),
        ({"origins": [ORIGIN], "expiry_margin": -1}, "expiry_margin"),
        ({"origins": [ORIGIN], "refresh_ahead": float("nan")}, "refresh_ahead"),
        (
            {"origins": [ORIGIN], "refresh_ahead_fraction": 1.5},
            "refresh_ahead_fraction",
        ),
        ({"origins": [ORIGIN], "cache_size": 0}, "maxsize"),
        ({"origins": [ORIGIN], "cache": {}}, "ContextCache"),
        ({"origins": [ORIGIN], "attach": 42}, "attach"),
        ({"origins": [ORIGIN], "classify": "401"}, "classify"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], words: str) -> None:
    """Every bad pipeline setting raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=words):
        AuthPipeline(**kwargs)


def test_pipeline_repr_names_origins_and_customer_only() -> None:
    """repr shows origins and the customer id, never a context."""
    pipeline = AuthPipeline(origins=["https://API.chat.example:443"])
    pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": "s3cr3t-repr"}})
    pipeline.get_context()
    assert repr(pipeline) == "AuthPipeline(origins=['https://api.chat.example'], customer='alice')"


def test_on_customer_cleared_is_called_for_every_customer_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """clear(), a switch and a failing hook: on_customer_cleared hears of each old customer."""
    cleared: list[str] = []

    class Recorder:
        @hookimpl
        def on_customer_cleared(self, customer: Any) -> None:
            cleared.append(customer.id)

    class Broken:
        @hookimpl
        def on_customer_cleared(self) -> None:
            raise RuntimeError("revocation endpoint down")

    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(Recorder())
    pipeline.load("alice", Counter())
    pipeline.set_customer("alice", pipeline.customer.provider)  # type: ignore[union-attr]
    pipeline.set_customer("bob", Counter())
    pipeline.register(Broken())
    with caplog.at_level(logging.WARNING, logger="asapp_auth"):
        pipeline.clear()
    pipeline.clear()
    assert cleared == ["alice", "bob"]  # the broken hook, asked first, stopped no other
    assert pipeline.customer is None
    warnings = [r.getMessage() for r in caplog.records]
    assert any("on_customer_cleared hook of plugin" in m and "RuntimeError" in m for m in warnings)


def test_memory_cache_is_bounded_and_drops_the_oldest_first() -> None:
    """Past maxsize the entry stored longest ago is dropped, from reads too."""
    from asapp_auth.cache import CachedContext

    cache = MemoryContextCache(maxsize=3)
    entries = {
        k: CachedContext(AuthContext({"Auth": {"Token": k}}), "p", 0.0, 1.0, 2.0) for k in "abcd"
    }
    for key in "abc":
        cache.set(key, entries[key])
    cache.set("a", entries["a"])  # stored anew: now the newest
    cache.set("d", entries["d"])
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [entries["a"], entries["c"], entries["d"]]
    assert len(cache) == 3
    assert cache.pop("c") is entries["c"]
    assert cache.get("c") is None
    cache.clear()
    assert len(cache) == 0
    assert cache.get("a") is None
