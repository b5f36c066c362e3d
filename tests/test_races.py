"""Races between customer changes, refreshes and logins, found in review and kept fixed."""

from __future__ import annotations

import asyncio
import threading
import time
import types
from typing import Any

import httpx
import pytest
from interleave import PATIENCE, Clock, Joins, join_provider_threads

from asapp_auth import AuthContext, AuthPipeline, Customer, hookimpl
from asapp_auth.errors import ConfigurationError, LoginRequiredError
from asapp_auth.testing import Exchange, FakePlatform


class SetsBob:
    """A login handler that logs in bob, and records which thread it ran in."""

    def __init__(self, pipeline: AuthPipeline, provider: Any) -> None:
        self.pipeline, self.provider = pipeline, provider
        self.cleared_in: list[str] = []

    @hookimpl
    def on_login_required(self) -> bool:
        self.pipeline.set_customer("bob", self.provider)
        return True

    @hookimpl
    def on_customer_cleared(self, customer: Customer) -> None:
        self.cleared_in.append(threading.current_thread().name)


def tokens(
    platform: FakePlatform,
    name: str,
    calls: list[tuple[str, bool]],
    held: tuple[threading.Event, threading.Event] | None = None,
) -> Any:
    """A provider of ``name``'s tokens; with ``held`` (entered, go), a refresh sets ``entered``
    and waits for ``go``."""

    def provider(needs_refresh: bool) -> dict[str, Any]:
        calls.append((name, needs_refresh))
        if needs_refresh and held is not None:
            held[0].set()
            held[1].wait(PATIENCE)
        return {"Auth": {"Token": platform.issue_token(name)}}

    return provider


def held_until(platform: FakePlatform, path: str) -> tuple[threading.Event, threading.Event]:
    """Route ``path`` to answer as ``/v1/account`` does, but only once ``go`` is set; the
    route sets ``received`` when a request arrives. Returns (received, go)."""
    received, go = threading.Event(), threading.Event()

    def held(exchange: Exchange) -> None:
        received.set()
        go.wait(PATIENCE)
        customer = platform.customer_of(exchange.token)
        if customer is None:
            exchange.answer(401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        else:
            exchange.answer(200, {"customer": customer})

    platform.route(path, held)
    return received, go


def once(event: threading.Event, then: Any, *args: Any) -> threading.Thread:
    """A started thread that runs ``then(*args)`` once ``event`` is set."""

    def run() -> None:
        assert event.wait(PATIENCE)
        then(*args)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_after_a_session_gone_login_the_request_goes_on_as_the_new_customer(
    platform: FakePlatform,
) -> None:
    """When a refresh finds the session gone, the retried request never carries the old context."""
    calls: list[tuple[str, bool]] = []

    def alice(needs_refresh: bool) -> dict[str, Any]:
        calls.append(("alice", needs_refresh))
        if needs_refresh:
            raise LoginRequiredError("refresh token revoked")
        return AuthContext({"Auth": {"Token": platform.issue_token("alice")}}, expires_in=60)

    pipeline = AuthPipeline(origins=[platform.origin], refresh_ahead=0)
    pipeline.register(SetsBob(pipeline, tokens(platform, "bob", calls)))
    pipeline.load("alice", alice)
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        entry = pipeline.cached()
        assert entry is not None
        # Expired by the pipeline's clock; the platform still takes the token.
        entry.expires_at = entry.valid_until = 0.0
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "bob"}
    assert calls == [("alice", False), ("alice", True), ("bob", False)]


def test_a_rejected_request_retried_after_a_switch_goes_as_the_new_customer(
    platform: FakePlatform,
) -> None:
    """A switch during the refresh of a rejected request: the retry is the new customer's."""
    calls: list[tuple[str, bool]] = []
    entered, go = threading.Event(), threading.Event()
    alice = tokens(platform, "alice", calls, (entered, go))
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", alice)

    def switch() -> None:
        pipeline.set_customer("bob", tokens(platform, "bob", calls))
        go.set()  # alice's refresh returns only after the switch

    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        platform.expire()
        switching = once(entered, switch)  # while alice's refresh runs
        try:
            answer = client.get(f"{platform.url}/v1/account").json()
        finally:
            go.set()
            switching.join(PATIENCE)
    assert answer == {"customer": "bob"}
    assert calls == [("alice", False), ("alice", True), ("bob", False)]
    assert pipeline._cache.get(("alice", id(alice))) is None  # the orphaned refresh is not kept


def test_a_rejection_arriving_after_clear_asks_no_provider_and_caches_nothing() -> None:
    """A 401 that arrives after clear() calls no provider of the cleared customer."""
    calls: list[tuple[str, bool]] = []
    with FakePlatform() as platform:
        received, go = held_until(platform, "/v1/held")
        pipeline = AuthPipeline(origins=[platform.origin], login_timeout=0)
        pipeline.load("alice", tokens(platform, "alice", calls))

        def clear() -> None:
            pipeline.clear()
            go.set()  # the platform's 401 comes only after the clear

        with httpx.Client(auth=pipeline) as client:
            client.get(f"{platform.url}/v1/account")
            platform.expire()
            clearing = once(received, clear)  # while the request is at the platform
            try:
                with pytest.raises(LoginRequiredError):
                    client.get(f"{platform.url}/v1/held")
            finally:
                go.set()
                clearing.join(PATIENCE)
    assert calls == [("alice", False)]
    assert len(pipeline._cache) == 0  # type: ignore[arg-type]


def test_a_refresh_ahead_past_its_timeout_is_joined_at_expiry_not_doubled(
    platform: FakePlatform,
) -> None:
    """A refresh ahead still running past provider_timeout is waited on, not run a second time."""
    asked, release = threading.Event(), threading.Event()
    count = [0]

    def provider(needs_refresh: bool) -> AuthContext:
        count[0] += 1
        if count[0] == 2:  # the refresh ahead hangs until released
            asked.set()
            release.wait(10)
        return AuthContext({"Auth": {"Token": platform.issue_token("alice")}}, expires_in=60)

    pipeline = AuthPipeline(origins=[platform.origin], provider_timeout=5)
    pipeline.load("alice", provider)
    key = pipeline.customer.cache_key  # type: ignore[union-attr]
    joins = Joins(pipeline)
    answers: list[Any] = []
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        entry = pipeline._cache.get(key)
        assert entry is not None
        entry.refresh_at = 0.0  # due for a refresh ahead
        client.get(f"{platform.url}/v1/account")  # starts it, in the background
        assert asked.wait(10)
        entry.expires_at = 0.0  # and now expired,
        pipeline._inflight[key].deadline = 0.0  # with the refresh ahead past its own timeout
        request = threading.Thread(
            target=lambda: answers.append(client.get(f"{platform.url}/v1/account").json())
        )
        request.start()
        joins.wait(1)
        release.set()
        request.join(PATIENCE)
    assert answers == [{"customer": "alice"}]
    assert count[0] == 2


def test_on_customer_cleared_for_a_gone_session_runs_off_the_event_loop(
    platform: FakePlatform,
) -> None:
    """Under asyncio, the session-gone on_customer_cleared call is made in a worker thread."""

    def alice(needs_refresh: bool) -> AuthContext:
        if needs_refresh:
            raise LoginRequiredError("gone")
        return AuthContext({"Auth": {"Token": platform.issue_token("alice")}})

    pipeline = AuthPipeline(origins=[platform.origin])
    handler = SetsBob(pipeline, tokens(platform, "bob", []))
    pipeline.register(handler)
    pipeline.load("alice", alice)

    async def main() -> Any:
        async with httpx.AsyncClient(auth=pipeline) as client:
            await client.get(f"{platform.url}/v1/account")
            platform.expire()
            return (await client.get(f"{platform.url}/v1/account")).json()

    assert asyncio.run(main()) == {"customer": "bob"}
    join_provider_threads()  # the worker thread that clears alice has ended
    assert handler.cleared_in
    assert handler.cleared_in[0] != threading.main_thread().name


def test_a_failed_load_can_be_retried() -> None:
    """load() that raised counts for nothing: a corrected load() is accepted."""
    pipeline = AuthPipeline(origins=["https://api.chat.example"])
    with pytest.raises(ConfigurationError):
        pipeline.load("alice", 42)  # type: ignore[arg-type]
    assert pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": "t"}}) is not None


def test_a_get_with_the_context_in_its_json_body_is_not_redirected_elsewhere(
    platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """httpx keeps the body of a GET on any redirect: a context merged into it never leaves."""
    from asapp_auth.errors import RedirectBlockedError

    token = platform.issue_token("alice")
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", lambda r: {"Auth": {"Token": token, "Body": {"k": "b-s3cr3t"}}})
    with httpx.Client(auth=pipeline, follow_redirects=True) as client:
        for status in (302, 307):
            with pytest.raises(RedirectBlockedError):
                client.request(
                    "GET",
                    f"{platform.url}/redirect",
                    params={"to": f"{elsewhere.url}/public", "status": status},
                    json={"q": 1},
                )
    assert elsewhere.received == []


def test_cookies_survive_a_same_origin_redirect(platform: FakePlatform) -> None:
    """httpx rebuilds Cookie from its jar on each hop; the guard puts the context's back."""
    token = platform.issue_token("alice")
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", lambda r: {"Auth": {"Token": token, "Cookies": {"sid": "ck-s3cr3t"}}})
    with httpx.Client(auth=pipeline, follow_redirects=True, cookies={"pref": "dark"}) as client:
        client.get(f"{platform.url}/redirect", params={"to": f"{platform.url}/public"})
    hop = platform.requests_to("/public")[0].headers
    assert "sid=ck-s3cr3t" in hop["Cookie"]
    assert "pref=dark" in hop["Cookie"]


def test_internationalised_origins_receive_their_context() -> None:
    """An IDN origin matches requests and hops by its ASCII form."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Key"))
        return httpx.Response(200)

    pipeline = AuthPipeline(origins=["https://bücher.example"])
    pipeline.load("alice", lambda r: {"Auth": {"Headers": {"X-Key": "k-s3cr3t"}}})
    with httpx.Client(auth=pipeline, transport=httpx.MockTransport(handler)) as client:
        client.get("https://bücher.example/v1")
        client.get("https://xn--bcher-kva.example/v1")
    assert seen == ["k-s3cr3t", "k-s3cr3t"]


def test_header_values_with_edge_white_space_are_refused_without_quoting_them() -> None:
    """A token or header value with white space at an end is refused, value unquoted."""
    from asapp_auth.errors import InvalidContextError

    for data in (
        {"Auth": {"Token": "t-s3cr3t "}},
        {"Auth": {"Headers": {"X-K": " v-s3cr3t"}}},
    ):
        with pytest.raises(InvalidContextError) as caught:
            AuthContext(data)
        assert "s3cr3t" not in str(caught.value)


def test_repr_shows_public_keys_only_where_the_schema_puts_them() -> None:
    """A secret under a key named like a public one, deeper down, is still redacted."""
    context = AuthContext(
        {
            "Auth": {"Headers": {"Segments": "h-s3cr3t"}, "Scopes": ["read"]},
            "CustomerInfo": {"Scopes": "pii-s3cr3t"},
        }
    )
    text = repr(context)
    assert "s3cr3t" not in text
    assert "['read']" in text


def test_attachment_reprs_hold_no_values() -> None:
    """The internal records of what was attached show no header, cookie or body value."""
    from asapp_auth import MapContext

    context = AuthContext({"Auth": {"Token": "t-s3cr3t", "Cookies": {"c": "c-s3cr3t"}}})
    attacher = MapContext()
    prepared = attacher.prepare(context)
    attachment = attacher.attach(httpx.Request("GET", "https://a.example"), prepared)
    assert "s3cr3t" not in repr(prepared)
    assert "s3cr3t" not in repr(attachment)


def test_contexts_that_are_not_json_are_refused_when_returned() -> None:
    """An unknown key whose value is not JSON is refused when the provider returns it."""
    import datetime

    from asapp_auth.errors import InvalidContextError

    with pytest.raises(InvalidContextError, match="Extra"):
        AuthContext({"Auth": {"Token": "t"}, "Extra": datetime.date.today()})


def test_a_context_returned_again_is_served_only_for_what_is_left_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider returning a context it made earlier gets only its remaining lifetime."""
    made = AuthContext({"Auth": {"Token": "t"}}, expires_in=100)
    clock = Clock()
    monkeypatch.setattr("asapp_auth._store.time", clock)
    wall = time.time
    # 60 s later by the wall clock, which a context's own expiry is counted on.
    monkeypatch.setattr("asapp_auth.context.time", types.SimpleNamespace(time=lambda: wall() + 60))
    pipeline = AuthPipeline(origins=["https://a.example"], expiry_margin=0, refresh_ahead=0)
    pipeline.load("alice", lambda r: made)
    pipeline.get_context()
    entry = pipeline.cached()
    assert entry is not None
    assert clock.now + 39 < entry.expires_at <= clock.now + 40  # not the 100 s it began with
