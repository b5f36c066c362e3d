"""The httpx adapter against real HTTP servers on 127.0.0.1: attach, classify, retry, redirect."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from interleave import PATIENCE

from asapp_auth import (
    AuthContext,
    AuthPipeline,
    ContextHeader,
    Customer,
    Verdict,
    hookimpl,
)
from asapp_auth.errors import (
    LoginRequiredError,
    RedirectBlockedError,
    RequestNotReplayableError,
    TokenRejectedError,
)
from asapp_auth.testing import Exchange, FakePlatform, RecordingProvider


class LoginHandler:
    """An on_login_required handler that logs a customer in from another thread."""

    def __init__(self, pipeline: AuthPipeline, provider: Any, customer_id: str = "alice") -> None:
        self.pipeline = pipeline
        self.provider = provider
        self.customer_id = customer_id
        self.calls: list[tuple[str | None, str]] = []
        self.answer: bool | None = True
        self.set_it = True

    @hookimpl
    def on_login_required(self, customer: Customer | None, reason: str) -> bool | None:
        self.calls.append((None if customer is None else customer.id, reason))
        if self.set_it:
            # The app logs the customer in elsewhere and sets it from that thread, before or
            # after this returns: the requests go on as that customer either way.
            threading.Thread(
                target=self.pipeline.set_customer, args=(self.customer_id, self.provider)
            ).start()
        return self.answer


class ExpiryRecorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def on_token_expired(self, customer: Customer, context: AuthContext) -> None:
        self.calls.append(customer.id)


def test_context_goes_only_to_configured_origins(
    platform: FakePlatform, elsewhere: FakePlatform, pipeline: AuthPipeline
) -> None:
    """The configured origin receives the bearer token; another origin receives nothing."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "alice"}
        assert client.get(f"{elsewhere.url}/public").status_code == 200
        # The same host by another name is another origin.
        other_name = platform.url.replace("127.0.0.1", "localhost")
        assert client.get(f"{other_name}/public").status_code == 200
    assert platform.received[0].headers["Authorization"] == f"Bearer {provider.tokens[0]}"
    assert "Authorization" not in elsewhere.received[0].headers
    assert "Authorization" not in platform.received[1].headers


def test_cached_context_serves_many_requests_with_one_provider_call(
    platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """Repeated requests reuse the cached context: the provider is called once."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client:
        for _ in range(20):
            assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert provider.calls == [False]


def test_rejected_token_is_refreshed_once_and_the_request_retried(
    platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """A 401 invalid_token calls on_token_expired once, refreshes, and retries the request."""
    provider = RecordingProvider(platform, "alice")
    recorder = ExpiryRecorder()
    pipeline.register(recorder)
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        platform.expire()
        response = client.get(f"{platform.url}/v1/account")
    assert response.json() == {"customer": "alice"}
    assert provider.calls == [False, True]
    assert recorder.calls == ["alice"]
    assert [r.customer_id for r in platform.received] == ["alice", None, "alice"]


def test_second_rejection_raises_instead_of_looping(platform: FakePlatform) -> None:
    """A context rejected again right after its refresh raises TokenRejectedError."""
    calls: list[bool] = []

    def never_valid(needs_refresh: bool) -> dict[str, Any]:
        calls.append(needs_refresh)
        return {"Auth": {"Token": "not-a-platform-token"}}

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", never_valid)
    with httpx.Client(auth=pipeline) as client:
        with pytest.raises(TokenRejectedError, match="again") as caught:
            client.get(f"{platform.url}/v1/account")
    assert caught.value.status_code == 401
    assert calls == [False, True]
    assert len(platform.received) == 2
    assert "not-a-platform-token" not in str(caught.value)


def test_request_rejected_with_an_older_context_retries_without_refreshing(
    platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """Only a rejection of the context still cached triggers a refresh; others just retry."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    pipeline.get_context()
    received, refreshed = threading.Event(), threading.Event()

    def slow(exchange: Exchange) -> None:
        # Checks the token only after the app has refreshed it elsewhere.
        received.set()
        refreshed.wait(PATIENCE)
        if platform.customer_of(exchange.token) is None:
            exchange.answer(401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        else:
            exchange.answer(200, {"ok": True})

    platform.route("/v1/slow", slow)
    result: list[int] = []
    with httpx.Client(auth=pipeline) as client:
        worker = threading.Thread(
            target=lambda: result.append(client.get(f"{platform.url}/v1/slow").status_code)
        )
        worker.start()
        try:
            assert received.wait(PATIENCE)
            platform.expire(provider.tokens[0])
            pipeline.get_context(needs_refresh=True)  # another caller refreshed meanwhile
        finally:
            refreshed.set()
            worker.join(PATIENCE)
    assert result == [200]
    assert provider.calls == [False, True]  # the older rejection caused no third call


def test_anonymous_request_needing_login_runs_the_handler_and_goes_on(
    platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """An anonymous 401 runs on_login_required; once a customer is set the request is retried."""
    provider = RecordingProvider(platform, "alice")
    handler = LoginHandler(pipeline, provider)
    pipeline.register(handler)
    pipeline.load()
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/public").status_code == 200
        response = client.get(f"{platform.url}/v1/account")
    assert response.json() == {"customer": "alice"}
    assert handler.calls == [(None, "anonymous")]
    assert pipeline.customer is not None
    assert pipeline.customer.id == "alice"


def test_login_required_without_a_handler_fails_at_once(
    platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """With no handler taking charge the caller gets LoginRequiredError without waiting."""
    with httpx.Client(auth=pipeline) as client:
        with pytest.raises(LoginRequiredError, match="no on_login_required handler"):
            client.get(f"{platform.url}/v1/account")


def test_login_declined_or_never_completed(platform: FakePlatform) -> None:
    """A declined login fails at once; a login never completed fails after login_timeout."""
    pipeline = AuthPipeline(origins=[platform.origin], login_timeout=0.3)
    handler = LoginHandler(pipeline, RecordingProvider(platform, "alice"))
    pipeline.register(handler)
    handler.answer, handler.set_it = False, False
    with httpx.Client(auth=pipeline) as client:
        with pytest.raises(LoginRequiredError, match="declined"):
            client.get(f"{platform.url}/v1/account")
        handler.answer = True
        with pytest.raises(LoginRequiredError, match="login_timeout"):
            client.get(f"{platform.url}/v1/account")


def test_session_gone_on_refresh_goes_to_login_and_continues_as_the_new_customer(
    platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """A provider saying the session is gone triggers on_login_required(session_gone)."""
    first = RecordingProvider(platform, "alice")
    second = RecordingProvider(platform, "alice")
    handler = LoginHandler(pipeline, second)
    pipeline.register(handler)
    pipeline.load("alice", first)
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        platform.expire()
        first.fail = LoginRequiredError("refresh token revoked")
        response = client.get(f"{platform.url}/v1/account")
    assert response.json() == {"customer": "alice"}
    assert handler.calls == [("alice", "session_gone")]
    assert second.calls == [False]


def test_streamed_body_is_never_replayed(platform: FakePlatform, pipeline: AuthPipeline) -> None:
    """A rejected request with a consumed stream body raises; the context is refreshed anyway."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)

    def body() -> Iterator[bytes]:
        yield b'{"text": "hello"}'

    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        platform.expire()
        with pytest.raises(RequestNotReplayableError, match="send the request again"):
            client.post(f"{platform.url}/v1/echo", content=body())
        assert client.post(f"{platform.url}/v1/echo", content=body()).status_code == 200
    assert provider.calls == [False, True]


def test_headers_cookies_and_body_are_mapped_onto_the_request(platform: FakePlatform) -> None:
    """Auth.Headers become headers, Auth.Cookies join the Cookie header, Auth.Body the JSON."""
    token = platform.issue_token("alice")
    context = {
        "Auth": {
            "Token": token,
            "Headers": {"X-Session": "hdr-s3cr3t"},
            "Cookies": {"sid": "ck-s3cr3t"},
            "Body": {"session": "body-s3cr3t"},
        }
    }
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", lambda needs_refresh: context)
    with httpx.Client(auth=pipeline, cookies={"pref": "dark"}) as client:
        echoed = client.post(f"{platform.url}/v1/echo", json={"text": "hi"}).json()
        client.post(f"{platform.url}/v1/echo", content=b"plain text")
    first, second = platform.received
    assert first.headers["X-Session"] == "hdr-s3cr3t"
    assert first.headers["Cookie"] == "pref=dark; sid=ck-s3cr3t"
    assert echoed["json"] == {"text": "hi", "session": "body-s3cr3t"}
    assert int(first.headers["Content-Length"]) == len(first.body)
    assert second.body == b"plain text"


def test_whole_context_header_and_callable_attachers(platform: FakePlatform) -> None:
    """ContextHeader sends the context as JSON; a callable attacher places it itself."""
    token = platform.issue_token("alice")
    context = {"Auth": {"Token": token}, "CustomerInfo": {"tier": "gold"}}
    as_header = AuthPipeline(origins=[platform.origin], attach=ContextHeader("X-Ctx"))
    as_header.load("alice", lambda needs_refresh: context)

    def place(request: httpx.Request, ctx: AuthContext) -> None:
        request.headers["Authorization"] = f"Bearer {ctx.token}"
        request.headers["X-Tier"] = ctx["CustomerInfo"]["tier"]

    by_callable = AuthPipeline(origins=[platform.origin], attach=place)
    by_callable.load("alice", lambda needs_refresh: context)
    with httpx.Client(auth=as_header) as client:
        client.get(f"{platform.url}/public")
    with httpx.Client(auth=by_callable) as client:
        assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert json.loads(platform.received[0].headers["X-Ctx"]) == context
    assert platform.received[1].headers["X-Tier"] == "gold"


def test_callable_attacher_is_undone_before_a_retry(platform: FakePlatform) -> None:
    """What a callable attacher added is taken off before the refreshed context goes on."""
    provider = RecordingProvider(platform, "alice")

    def place(request: httpx.Request, ctx: AuthContext) -> None:
        request.headers["Authorization"] = f"Bearer {ctx.token}"
        request.headers.setdefault("X-Attempt", ctx.token or "")

    pipeline = AuthPipeline(origins=[platform.origin], attach=place)
    pipeline.load("alice", provider)
    pipeline.get_context()
    platform.expire()
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert platform.received[1].headers["X-Attempt"] == provider.tokens[1]


@pytest.mark.parametrize("status", [302, 303, 307, 308])
def test_cross_origin_redirect_carries_no_part_of_the_context(
    platform: FakePlatform, elsewhere: FakePlatform, status: int
) -> None:
    """A redirect to another origin arrives without the token, custom headers or cookies."""
    token = platform.issue_token("alice")
    context = {
        "Auth": {
            "Token": token,
            "Headers": {"X-Session": "hdr-s3cr3t"},
            "Cookies": {"sid": "ck-s3cr3t"},
        }
    }
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", lambda needs_refresh: context)
    target = f"{elsewhere.url}/public"
    with httpx.Client(auth=pipeline, follow_redirects=True) as client:
        response = client.get(f"{platform.url}/redirect", params={"to": target, "status": status})
    assert response.status_code == 200
    assert platform.received[0].headers["X-Session"] == "hdr-s3cr3t"
    hop = elsewhere.received[0].headers
    assert "Authorization" not in hop
    assert "X-Session" not in hop
    assert "ck-s3cr3t" not in hop.get("Cookie", "")


def test_cross_origin_307_with_the_context_in_the_body_is_stopped(
    platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """A 307 that would carry Auth.Body to another origin raises RedirectBlockedError."""
    token = platform.issue_token("alice")
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load(
        "alice", lambda needs_refresh: {"Auth": {"Token": token, "Body": {"k": "b-s3cr3t"}}}
    )
    with httpx.Client(auth=pipeline, follow_redirects=True) as client:
        with pytest.raises(RedirectBlockedError, match="request body"):
            client.post(
                f"{platform.url}/redirect",
                params={"to": f"{elsewhere.url}/public", "status": 307},
                json={"text": "hi"},
            )
    assert elsewhere.received == []


def test_same_origin_redirect_keeps_the_context(platform: FakePlatform) -> None:
    """A redirect within the configured origin still carries the context."""
    provider = RecordingProvider(platform, "alice")
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline, follow_redirects=True) as client:
        response = client.get(
            f"{platform.url}/redirect", params={"to": f"{platform.url}/v1/account"}
        )
    assert response.json() == {"customer": "alice"}


def test_a_trace_extension_of_the_caller_still_runs(platform: FakePlatform) -> None:
    """The redirect guard chains to a trace callback the caller installed."""
    events: list[str] = []
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    with httpx.Client(auth=pipeline) as client:
        client.get(
            f"{platform.url}/v1/account",
            extensions={"trace": lambda name, info: events.append(name)},
        )
    assert "http11.send_request_headers.started" in events


def test_custom_classifier_can_read_the_body(platform: FakePlatform) -> None:
    """A classifier declaring reads_body_on sees the body of those responses."""

    def classify(response: httpx.Response, attached: bool) -> Verdict | None:
        if response.status_code == 403 and response.json().get("error") == "login_required":
            return Verdict.LOGIN_REQUIRED
        return None

    classify.reads_body_on = {403}  # type: ignore[attr-defined]

    def forbidden(exchange: Exchange) -> None:
        exchange.answer(403, {"error": "login_required"})

    platform.route("/gated", forbidden)
    pipeline = AuthPipeline(origins=[platform.origin], classify=classify)
    with httpx.Client(auth=pipeline) as client:
        with pytest.raises(LoginRequiredError):
            client.get(f"{platform.url}/gated")


def test_async_client_attaches_refreshes_and_logs_in(platform: FakePlatform) -> None:
    """An AsyncClient gets the same behaviour: login, attach, refresh on rejection."""
    pipeline = AuthPipeline(origins=[platform.origin])
    provider = RecordingProvider(platform, "alice")
    handler = LoginHandler(pipeline, provider)
    pipeline.register(handler)

    async def main() -> list[Any]:
        async with httpx.AsyncClient(auth=pipeline) as client:
            first = (await client.get(f"{platform.url}/v1/account")).json()
            platform.expire()
            second = (await client.get(f"{platform.url}/v1/account")).json()
            context = await pipeline.aget_context()
            return [first, second, context]

    first, second, context = asyncio.run(main())
    assert first == second == {"customer": "alice"}
    assert handler.calls == [(None, "anonymous")]
    assert provider.calls == [False, True]
    assert context.token == provider.tokens[-1]


def test_async_cross_origin_redirect_is_guarded(
    platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """The redirect guard works for async transports too."""
    token = platform.issue_token("alice")
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load(
        "alice", lambda needs_refresh: {"Auth": {"Token": token, "Headers": {"X-K": "v-s3cr3t"}}}
    )

    async def main() -> int:
        async with httpx.AsyncClient(auth=pipeline, follow_redirects=True) as client:
            response = await client.get(
                f"{platform.url}/redirect", params={"to": f"{elsewhere.url}/public"}
            )
            return response.status_code

    assert asyncio.run(main()) == 200
    assert "X-K" not in elsewhere.received[0].headers
    assert "Authorization" not in elsewhere.received[0].headers


def test_for_customer_auth_with_a_real_server(platform: FakePlatform) -> None:
    """Per-request auth=pipeline.for_customer(id) authenticates each request as that customer."""

    class Tokens:
        @hookimpl
        def provide_context(self, customer: Customer) -> AuthContext:
            return platform.context_for(customer.id)

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.register(Tokens())
    with httpx.Client() as client:
        for name in ("ann", "ben", "cy"):
            response = client.get(f"{platform.url}/v1/account", auth=pipeline.for_customer(name))
            assert response.json() == {"customer": name}
