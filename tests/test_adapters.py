"""One behavioural suite for every client adapter, against real servers on 127.0.0.1.

Each test runs once per client (``tests/adapters.py``): httpx and httpx2, sync and async,
requests and aiohttp. What differs between clients (how they follow redirects, how they retry)
is each adapter's business; what a caller sees must not differ.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from asapp_auth import (
    AuthContext,
    AuthPipeline,
    ContextHeader,
    Customer,
    Verdict,
    get_plugin_manager,
    hookimpl,
)
from asapp_auth._any_client import ASYNC_KINDS, KINDS, open_client
from asapp_auth._any_client import AnyClient as Session
from asapp_auth.errors import (
    AsappAuthError,
    LoginRequiredError,
    ProviderError,
    RedirectBlockedError,
    RequestNotReplayableError,
    TokenRejectedError,
)
from asapp_auth.testing import FakePlatform, RecordingProvider

SECRETS = ("hdr-s3cr3t", "ck-s3cr3t", "body-s3cr3t")


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pipeline(platform: FakePlatform) -> AuthPipeline:
    return AuthPipeline(origins=[platform.origin], plugin_manager=get_plugin_manager())


@pytest.fixture
def session(kind: str, pipeline: AuthPipeline) -> Iterator[Session]:
    opened = open_client(kind, pipeline)
    try:
        yield opened
    finally:
        opened.close()


def _full_context(token: str) -> dict[str, Any]:
    return {
        "Auth": {
            "Token": token,
            "Headers": {"X-Session": "hdr-s3cr3t"},
            "Cookies": {"sid": "ck-s3cr3t"},
            "Body": {"session": "body-s3cr3t"},
        }
    }


def _carries_nothing(received: Any, token: str) -> None:
    raw = json.dumps(dict(received.headers)) + received.body.decode("latin-1")
    for secret in (token, *SECRETS):
        assert secret not in raw


class Expiries:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def on_token_expired(self, customer: Customer, context: AuthContext) -> None:
        self.calls.append(customer.id)


class LogsIn:
    """An on_login_required handler that sets the customer from another thread."""

    def __init__(self, pipeline: AuthPipeline, provider: Any) -> None:
        self.pipeline, self.provider = pipeline, provider
        self.calls: list[str] = []

    @hookimpl
    def on_login_required(self, customer: Customer | None, reason: str) -> bool:
        self.calls.append(reason)
        threading.Thread(target=self.pipeline.set_customer, args=("alice", self.provider)).start()
        return True


def test_context_goes_only_to_configured_origins(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """The platform gets the token; another origin gets no part of the context."""
    token = platform.issue_token("alice")
    pipeline.load("alice", lambda needs_refresh: _full_context(token))
    assert session.request("GET", f"{platform.url}/v1/account").status == 200
    session.request("POST", f"{elsewhere.url}/public", json={"text": "hi"})
    assert platform.received[0].headers["Authorization"] == f"Bearer {token}"
    _carries_nothing(elsewhere.received[0], token)


def test_headers_cookies_and_body_are_mapped_onto_the_request(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """Auth.Headers become headers, Auth.Cookies the Cookie header, Auth.Body joins the JSON."""
    token = platform.issue_token("alice")
    pipeline.load("alice", lambda needs_refresh: _full_context(token))
    echoed = session.request("POST", f"{platform.url}/v1/echo", json={"text": "hi"})
    received = platform.received[0]
    assert received.headers["X-Session"] == "hdr-s3cr3t"
    assert "sid=ck-s3cr3t" in received.headers["Cookie"]
    assert json.loads(echoed.body)["json"] == {"text": "hi", "session": "body-s3cr3t"}
    assert int(received.headers["Content-Length"]) == len(received.body)


def test_cached_context_serves_many_requests_with_one_provider_call(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """The provider is asked once; ten requests reuse its context."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    for _ in range(10):
        assert session.request("GET", f"{platform.url}/v1/account").status == 200
    assert provider.calls == [False]


# 1,000 tasks open 1,000 connections: seconds on an idle machine, minutes on a loaded one.
@pytest.mark.timeout(600)
def test_many_callers_on_an_expired_context_make_one_refresh(
    kind: str, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """Threads (sync clients) or 1,000 tasks (async) on a rejected context: one refresh."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    expiries = Expiries()
    pipeline.register(expiries)
    callers = 1000 if kind in ASYNC_KINDS else 50
    opened = open_client(kind, pipeline, pool=100 if callers > 50 else callers)
    try:
        assert opened.request("GET", f"{platform.url}/v1/account").status == 200
        platform.expire()
        results = opened.many(callers, f"{platform.url}/v1/account")
    finally:
        opened.close()
    assert [r for r in results if not (hasattr(r, "status") and r.status == 200)] == []
    assert provider.calls == [False, True]
    assert expiries.calls == ["alice"]


def test_a_rejected_context_is_refreshed_once_and_the_request_retried(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """A 401 on a context: on_token_expired, one refresh (needs_refresh=True), one retry."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    expiries = Expiries()
    pipeline.register(expiries)
    session.request("GET", f"{platform.url}/v1/account")
    platform.expire()
    result = session.request("POST", f"{platform.url}/v1/echo", json={"n": 1})
    assert result.status == 200
    assert json.loads(result.body)["json"] == {"n": 1}
    assert provider.calls == [False, True]
    assert expiries.calls == ["alice"]
    retried = platform.received[-1]
    assert retried.headers["Authorization"] == f"Bearer {provider.tokens[1]}"


def test_a_second_rejection_raises_instead_of_looping(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """A context refused right after its refresh raises TokenRejectedError; no third try."""
    pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": "never-valid"}})
    with pytest.raises(TokenRejectedError, match="again"):
        session.request("GET", f"{platform.url}/v1/account")
    assert len(platform.requests_to("/v1/account")) == 2


def test_an_anonymous_request_needing_a_login_goes_on_as_the_new_customer(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """A 401 without a context runs on_login_required once; the request goes on as alice."""
    provider = RecordingProvider(platform, "alice")
    handler = LogsIn(pipeline, provider)
    pipeline.register(handler)
    pipeline.load()
    result = session.request("GET", f"{platform.url}/v1/account")
    assert json.loads(result.body) == {"customer": "alice"}
    assert handler.calls == ["anonymous"]


def test_many_anonymous_requests_share_one_login(
    kind: str, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """Twenty anonymous requests that need a login run the handler once, then all go on."""
    provider = RecordingProvider(platform, "alice")
    handler = LogsIn(pipeline, provider)
    pipeline.register(handler)
    opened = open_client(kind, pipeline, pool=20)
    try:
        results = opened.many(20, f"{platform.url}/v1/account")
    finally:
        opened.close()
    assert all(json.loads(r.body) == {"customer": "alice"} for r in results)  # type: ignore[union-attr]
    assert handler.calls == ["anonymous"]


def test_no_request_after_clear_carries_the_old_customer(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """After clear() a request goes anonymous; after set_customer, as the new customer."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    assert json.loads(session.request("GET", f"{platform.url}/v1/account").body) == {
        "customer": "alice"
    }
    pipeline.clear()
    session.request("GET", f"{platform.url}/public")
    assert "Authorization" not in platform.received[-1].headers
    pipeline.set_customer("bob", RecordingProvider(platform, "bob"))
    assert json.loads(session.request("GET", f"{platform.url}/v1/account").body) == {
        "customer": "bob"
    }


def test_a_fixed_customer_handle_works_beside_the_current_customer(
    kind: str, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """for_customer(id) serves that customer whoever the pipeline's current customer is."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    bob = pipeline.for_customer("bob", RecordingProvider(platform, "bob"))
    opened = open_client(kind, bob)
    try:
        result = opened.request("GET", f"{platform.url}/v1/account")
    finally:
        opened.close()
    assert json.loads(result.body) == {"customer": "bob"}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_cross_origin_redirect_carries_no_context_byte(
    session: Session,
    pipeline: AuthPipeline,
    platform: FakePlatform,
    elsewhere: FakePlatform,
    status: int,
) -> None:
    """A redirect to another origin arrives with no token, header, cookie or body field."""
    token = platform.issue_token("alice")
    context = _full_context(token)
    del context["Auth"]["Body"]
    pipeline.load("alice", lambda needs_refresh: context)
    target = f"{elsewhere.url}/public"
    result = session.request("GET", f"{platform.url}/redirect?to={target}&status={status}")
    assert result.status == 200
    assert platform.received[0].headers["X-Session"] == "hdr-s3cr3t"
    assert len(elsewhere.received) == 1
    _carries_nothing(elsewhere.received[0], token)


def test_a_redirect_chain_back_and_forth_leaks_nothing(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """platform -> platform -> elsewhere: the same-origin hop keeps the context, the last none."""
    token = platform.issue_token("alice")
    context = _full_context(token)
    del context["Auth"]["Body"]
    pipeline.load("alice", lambda needs_refresh: context)
    last = f"{elsewhere.url}/public"
    middle = f"{platform.url}/redirect?to={last}&status=302"
    result = session.request("GET", f"{platform.url}/redirect?to={quote(middle)}&status=307")
    assert result.status == 200
    first, second = platform.received
    for hop in (first, second):
        assert hop.headers["Authorization"] == f"Bearer {token}"
        assert hop.headers["X-Session"] == "hdr-s3cr3t"
        assert "sid=ck-s3cr3t" in hop.headers.get("Cookie", "")
    _carries_nothing(elsewhere.received[0], token)


def test_a_cross_origin_307_with_the_context_in_the_body_is_stopped(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """A 307 elsewhere that would resend Auth.Body merged in the JSON body: refused, or sent
    without it; never delivered with it."""
    token = platform.issue_token("alice")
    pipeline.load("alice", lambda needs_refresh: _full_context(token))
    target = f"{elsewhere.url}/public"
    try:
        session.request(
            "POST", f"{platform.url}/redirect?to={target}&status=307", json={"text": "hi"}
        )
    except RedirectBlockedError:
        assert elsewhere.received == []
    else:
        _carries_nothing(elsewhere.received[0], token)
        assert json.loads(elsewhere.received[0].body) == {"text": "hi"}


def test_a_body_that_cannot_be_replayed_raises_the_typed_error(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """A streamed body rejected once cannot be retried: RequestNotReplayableError."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    session.request("GET", f"{platform.url}/v1/account")
    platform.expire()
    with pytest.raises(RequestNotReplayableError, match="send the request again"):
        session.request("POST", f"{platform.url}/v1/echo", stream=True)
    assert provider.calls == [False, True]


def test_a_login_that_never_comes_raises_login_required(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """An anonymous 401 with no login handler raises LoginRequiredError, and says why."""
    pipeline.load()
    with pytest.raises(LoginRequiredError, match="on_login_required"):
        session.request("GET", f"{platform.url}/v1/account")


def test_adapter_reprs_hold_no_secret(kind: str, pipeline: AuthPipeline) -> None:
    """The adapter's repr names the pipeline, never a context value."""
    pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": "tok-s3cr3t"}})
    pipeline.get_context()
    opened = open_client(kind, pipeline)
    try:
        shown = repr(getattr(opened.client, "auth", None)) + repr(opened.client)
    finally:
        opened.close()
    assert "s3cr3t" not in shown


class Proofs:
    """A request_proof plugin that signs each request anew, and takes a server nonce on a 401
    that asks for one (the DPoP pattern, RFC 9449 §8-9)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []
        self.nonce = "none"
        self._lock = threading.Lock()

    @hookimpl
    def request_proof(self, customer: Customer, method: str, url: str) -> dict[str, str]:
        with self._lock:
            self.made.append((method, url))
            return {"X-Proof": f"{customer.id} {method} {url} #{len(self.made)} n={self.nonce}"}

    @hookimpl
    def classify_response(self, status: int, headers: Any) -> Verdict | None:
        nonce = headers.get("X-Nonce")
        if status == 401 and nonce:
            self.nonce = nonce
            return Verdict.RETRY
        return None


def test_a_per_request_proof_is_made_for_every_request_and_never_cached(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """request_proof runs for each request with its method and URL (no query); the context
    itself is still fetched once."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    proofs = Proofs()
    pipeline.register(proofs)
    session.request("GET", f"{platform.url}/v1/account?page=2")
    session.request("POST", f"{platform.url}/v1/echo", json={"n": 1})
    sent = [r.headers["X-Proof"] for r in platform.received]
    assert sent == [
        f"alice GET {platform.url}/v1/account #1 n=none",
        f"alice POST {platform.url}/v1/echo #2 n=none",
    ]
    assert provider.calls == [False]


def test_a_retried_request_gets_a_fresh_proof_and_no_refresh_on_a_nonce_challenge(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """A 401 asking for a nonce: classify_response says RETRY; one resend, a new proof with the
    nonce, the same context, no refresh."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    proofs = Proofs()
    pipeline.register(proofs)
    seen: list[str] = []

    def nonce_please(exchange: Any) -> None:
        seen.append(exchange.headers.get("X-Proof", ""))
        if seen[-1].endswith("n=n-42"):
            exchange.answer(200, {"ok": True})
        else:
            exchange.answer(401, {"error": "use_nonce"}, {"X-Nonce": "n-42"})

    platform.route("/v1/nonce", nonce_please)
    assert session.request("GET", f"{platform.url}/v1/nonce").status == 200
    assert len(seen) == 2
    assert seen[0].endswith("#1 n=none")
    assert seen[1].endswith("#2 n=n-42")
    assert provider.calls == [False]


def test_classify_response_is_told_which_url_answered(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """classify_response gets the request's URL without query: a nonce is per server."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    told: list[str] = []

    class Told:
        @hookimpl
        def classify_response(self, url: str) -> Verdict | None:
            told.append(url)
            return Verdict.OK

    pipeline.register(Told())
    platform.route("/v1/no", lambda exchange: exchange.answer(401, {"error": "no"}))
    assert session.request("GET", f"{platform.url}/v1/no?page=3").status == 401
    assert told == [f"{platform.url}/v1/no"]


def test_a_second_nonce_challenge_hands_the_response_back(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """RETRY once per request: a server that keeps asking gets no third request."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    pipeline.register(Proofs())
    calls: list[int] = []

    def always(exchange: Any) -> None:
        calls.append(1)
        exchange.answer(401, {"error": "use_nonce"}, {"X-Nonce": f"n-{len(calls)}"})

    platform.route("/v1/stubborn", always)
    assert session.request("GET", f"{platform.url}/v1/stubborn").status == 401
    assert len(calls) == 2


def test_a_proof_never_reaches_another_origin(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """A redirect elsewhere carries no per-request part either."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    pipeline.register(Proofs())
    target = f"{elsewhere.url}/public"
    session.request("GET", f"{platform.url}/redirect?to={target}&status=307")
    assert "X-Proof" in platform.received[0].headers
    assert "X-Proof" not in elsewhere.received[0].headers


class HopProofs:
    """A request_proof plugin whose proofs name the method and URL they were made for and a jti
    of their own, as a DPoP proof's htm, htu and jti do (RFC 9449 §4.2)."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self._lock = threading.Lock()

    @hookimpl
    def request_proof(self, method: str, url: str) -> dict[str, str]:
        proof = f"{method} {url} {uuid.uuid4().hex}"
        with self._lock:
            self.made.append(proof)
        return {"X-Proof": proof}


@pytest.mark.parametrize(
    ("status", "hop_method"),
    [(301, "GET"), (302, "GET"), (303, "GET"), (307, "POST"), (308, "POST")],
)
def test_a_redirect_within_the_origins_gets_a_proof_made_for_its_hop(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, status: int, hop_method: str
) -> None:
    """A same-origin hop carries a new proof naming the hop's own method (a POST turned into a
    GET by a 301, 302 or 303) and URL without query, with a jti no other request had."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    proofs = HopProofs()
    pipeline.register(proofs)
    hop = f"{platform.url}/v1/echo?page=2"
    start = f"{platform.url}/redirect?to={quote(hop)}&status={status}"
    result = session.request("POST", start, json={"n": 1})
    assert result.status == 200
    assert json.loads(result.body)["method"] == hop_method
    sent = [r.headers["X-Proof"].split() for r in platform.received]
    assert [(method, url) for method, url, _ in sent] == [
        ("POST", f"{platform.url}/redirect"),
        (hop_method, f"{platform.url}/v1/echo"),
    ]
    assert sent[0][2] != sent[1][2]
    assert [" ".join(proof) for proof in sent] == proofs.made


def test_each_hop_of_a_chain_gets_its_own_proof_and_none_leaves_the_origins(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """platform -> platform -> platform -> elsewhere: three proofs, one per hop to the
    platform, each for that hop's URL; the hop elsewhere carries none, nor any proof made."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    proofs = HopProofs()
    pipeline.register(proofs)
    last = f"{elsewhere.url}/public"
    third = f"{platform.url}/redirect?to={quote(last)}&status=307"
    second = f"{platform.url}/redirect?to={quote(third)}&status=302"
    first = f"{platform.url}/redirect?to={quote(second)}&status=303"
    assert session.request("GET", first).status == 200
    sent = [r.headers["X-Proof"] for r in platform.received]
    assert len(sent) == len({proof.split()[2] for proof in sent}) == 3
    assert sent == proofs.made
    assert all(proof.split()[1] == f"{platform.url}/redirect" for proof in sent)
    received = elsewhere.received[0]
    assert "X-Proof" not in received.headers
    assert not any(proof in json.dumps(dict(received.headers)) for proof in proofs.made)


def test_requests_history_keeps_the_proof_each_request_was_sent_with(
    pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """requests builds a hop from the request before it: that request lends it the hop's proof,
    and ``history`` still shows what each request was sent with."""
    import requests

    from asapp_auth.requests import RequestsAuth

    pipeline.load("alice", RecordingProvider(platform, "alice"))
    proofs = HopProofs()
    pipeline.register(proofs)
    second = f"{platform.url}/redirect?to={quote(platform.url + '/public')}&status=307"
    with requests.Session() as client:
        client.auth = RequestsAuth(pipeline)
        response = client.get(f"{platform.url}/redirect?to={quote(second)}&status=302")
    shown = [r.request.headers["X-Proof"] for r in (*response.history, response)]
    assert shown == [r.headers["X-Proof"] for r in platform.received] == proofs.made
    assert len(set(shown)) == 3


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("not a mapping", "returned str"),
        ({"Bad Name": "v"}, "not an HTTP token"),
        ({"X-Proof": "line\nbreak"}, "cannot be sent"),
        ({"X-Proof": ""}, "cannot be sent"),
    ],
)
def test_a_malformed_proof_is_refused_naming_the_plugin(
    pipeline: AuthPipeline, platform: FakePlatform, answer: Any, words: str
) -> None:
    """What request_proof returns is checked; a bad value raises ProviderError naming the plugin
    and quoting no value, and the request is not sent."""

    class Broken:
        @hookimpl
        def request_proof(self) -> Any:
            return answer

    pipeline.load("alice", RecordingProvider(platform, "alice"))
    pipeline.register(Broken(), name="broken-proofs")
    opened = open_client("httpx", pipeline)
    try:
        with pytest.raises(ProviderError, match="broken-proofs") as caught:
            opened.request("GET", f"{platform.url}/v1/account")
    finally:
        opened.close()
    assert words in str(caught.value)
    assert "break" not in str(caught.value)
    assert platform.received == []


class Gated(RecordingProvider):
    """A RecordingProvider whose first call waits for ``release``; ``entered`` says it began,
    ``answered`` that a call after the first returned."""

    def __init__(self, platform: FakePlatform, customer_id: str, **kwargs: Any) -> None:
        super().__init__(platform, customer_id, **kwargs)
        self.entered, self.release, self.answered = (threading.Event() for _ in range(3))

    def __call__(self, needs_refresh: bool) -> AuthContext:
        first = not self.calls
        self.entered.set()
        if first:
            assert self.release.wait(30), "the test never released the provider"
        context = super().__call__(needs_refresh)
        if not first:
            self.answered.set()
        return context


def test_a_switch_while_a_context_is_fetched_sends_nothing_as_the_old_customer(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """A request waiting on alice's provider when bob is set goes as bob, like every request
    started after the switch: the platform never sees alice."""
    alice = Gated(platform, "alice")
    pipeline.load("alice", alice)
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(session.request("GET", f"{platform.url}/v1/account"))
    )
    first.start()
    assert alice.entered.wait(30)
    pipeline.set_customer("bob", RecordingProvider(platform, "bob"))
    after = session.request("GET", f"{platform.url}/v1/account")
    alice.release.set()
    first.join(30)
    assert json.loads(after.body) == {"customer": "bob"}
    assert [json.loads(r.body) for r in results] == [{"customer": "bob"}]
    assert {r.customer_id for r in platform.received} == {"bob"}


def test_a_retry_after_a_clear_during_its_refresh_carries_nothing_of_the_old_customer(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform
) -> None:
    """A request refused while the customer is cleared during its refresh goes again as nobody:
    no token, header or cookie of the old customer is on it."""
    entered, release = threading.Event(), threading.Event()
    token = platform.issue_token("alice")

    def provider(needs_refresh: bool) -> dict[str, Any]:
        if needs_refresh:
            entered.set()
            assert release.wait(30), "the test never released the provider"
        return {
            "Auth": {
                "Token": token,
                "Headers": {"X-Session": "hdr-s3cr3t"},
                "Cookies": {"sid": "ck-s3cr3t"},
            }
        }

    pipeline.load("alice", provider)
    assert session.request("GET", f"{platform.url}/v1/account").status == 200
    platform.expire()
    errors: list[Exception] = []

    def refused() -> None:
        try:
            session.request("GET", f"{platform.url}/v1/account")
        except LoginRequiredError as exc:
            errors.append(exc)

    worker = threading.Thread(target=refused)
    worker.start()
    assert entered.wait(30)
    pipeline.clear()
    release.set()
    worker.join(30)
    assert len(errors) == 1
    assert len(platform.received) == 3
    _carries_nothing(platform.received[2], token)


def test_refresh_ahead_runs_in_the_background_while_the_context_is_served(
    session: Session, platform: FakePlatform
) -> None:
    """Inside the refresh-ahead window one background refresh runs; requests keep the valid
    context meanwhile."""
    pipeline = AuthPipeline(
        origins=[platform.origin],
        expiry_margin=1,
        refresh_ahead=3600,
        refresh_ahead_fraction=0.99,
        plugin_manager=get_plugin_manager(),
    )
    # Served for 19 s (20 less the margin), and due for a refresh ahead at once (19.8 s ahead).
    provider = Gated(platform, "alice", lifetime=20)
    provider.release.set()  # the first call does not wait: only the refresh is watched
    pipeline.load("alice", provider)
    opened = open_client(session.kind, pipeline)
    try:
        first = opened.request("GET", f"{platform.url}/v1/account")
        second = opened.request("GET", f"{platform.url}/v1/account")
        assert provider.answered.wait(30), "no refresh ahead ran"
    finally:
        opened.close()
    assert (first.status, second.status) == (200, 200)
    assert provider.calls == [False, True]
    served = {r.headers["Authorization"] for r in platform.received}
    assert served == {f"Bearer {provider.tokens[0]}"}


def test_a_401_from_another_origin_after_a_redirect_is_handed_back(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """A redirect to another origin that answers 401 says nothing of our context: the response
    comes back as it is, with no refresh and no login."""
    provider = RecordingProvider(platform, "alice")
    pipeline.load("alice", provider)
    target = f"{elsewhere.url}/v1/account"
    result = session.request("GET", f"{platform.url}/redirect?to={target}&status=302")
    assert result.status == 401
    assert provider.calls == [False]
    assert "Authorization" not in elsewhere.received[0].headers


def _hostile(a: str, b: str) -> dict[str, str]:
    """Locations whose next hop some parser reads as ``a`` (configured) and another as ``b``."""
    a_port, b_port = a.rsplit(":", 1)[1], b.rsplit(":", 1)[1]
    return {
        "backslash-userinfo": f"http://{a}\\@{b}/public",
        "backslash-localhost": f"http://127.0.0.1:{a_port}\\@localhost:{b_port}/public",
        "backslash-path": f"http://{b}\\{a}/public",
        "userinfo": f"http://{a}@{b}/public",
        "tab-userinfo": f"http://{a}\t@{b}/public",
        "encoded-slash-userinfo": f"http://{a}%2F@{b}/public",
        "scheme-relative": f"//{b}/public",
        "scheme-relative-backslashes": f"\\\\{b}/public",
        "slash-backslash": f"/\\{b}/public",
        "localhost-same-port": f"http://localhost:{a_port}/public",
    }


_SHAPES = ("token", "headers-and-cookies", "context-header")


def _shaped_pipeline(shape: str, platform: FakePlatform) -> tuple[AuthPipeline, tuple[str, ...]]:
    """A pipeline loaded for alice in ``shape``, and the secrets that shape puts on a request."""
    token = platform.issue_token("alice")
    auth: dict[str, Any] = {"Token": token}
    if shape != "token":
        auth.update({"Headers": {"X-Session": "hdr-s3cr3t"}, "Cookies": {"sid": "ck-s3cr3t"}})
    attach = ContextHeader() if shape == "context-header" else None
    pipeline = AuthPipeline(origins=[platform.origin], attach=attach)
    pipeline.load("alice", lambda needs_refresh: {"Auth": dict(auth)})
    secrets = (token,) if shape != "headers-and-cookies" else (token, "hdr-s3cr3t", "ck-s3cr3t")
    return pipeline, secrets


@pytest.mark.parametrize("shape", _SHAPES)
@pytest.mark.parametrize("name", sorted(_hostile("a:1", "b:2")))
def test_a_hostile_location_takes_no_context_to_another_origin(
    kind: str, platform: FakePlatform, elsewhere: FakePlatform, shape: str, name: str
) -> None:
    """Whatever host a client reads from a tricky Location, only a request addressed to the
    configured origin carries any part of the context."""
    pipeline, secrets = _shaped_pipeline(shape, platform)
    netloc = platform.origin.split("//", 1)[1]
    hop = _hostile(netloc, elsewhere.origin.split("//", 1)[1])[name]
    opened = open_client(kind, pipeline)
    try:
        opened.request("GET", f"{platform.url}/redirect?to={quote(hop, safe='')}")
    except AsappAuthError:
        raise
    except Exception:  # the client refused the Location: the hop went nowhere
        pass
    finally:
        opened.close()
    first = json.dumps(dict(platform.received[0].headers))
    assert all(secret in first for secret in secrets)
    arrived = [r for r in platform.received[1:] if r.headers.get("Host") != netloc]
    for received in [*arrived, *elsewhere.received]:
        raw = json.dumps(dict(received.headers)) + received.body.decode("latin-1")
        assert not any(secret in raw for secret in secrets)


def test_a_307_to_a_hostile_location_with_the_context_in_the_body_is_stopped(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, elsewhere: FakePlatform
) -> None:
    """A 307 through a backslashed authority that would resend Auth.Body elsewhere: refused,
    or sent without it; never delivered with it."""
    token = platform.issue_token("alice")
    pipeline.load("alice", lambda needs_refresh: _full_context(token))
    hop = _hostile(platform.origin.split("//", 1)[1], elsewhere.origin.split("//", 1)[1])
    target = quote(hop["backslash-userinfo"], safe="")
    try:
        session.request(
            "POST", f"{platform.url}/redirect?to={target}&status=307", json={"text": "hi"}
        )
    except RedirectBlockedError:
        assert elsewhere.received == []
    except AsappAuthError:
        raise
    except Exception:  # the client refused the Location
        assert elsewhere.received == []
    else:
        for received in elsewhere.received:
            _carries_nothing(received, token)


@pytest.mark.parametrize("form", ["relative", "scheme-relative", "fragment"])
def test_a_same_origin_redirect_in_any_ordinary_form_keeps_the_context(
    session: Session, pipeline: AuthPipeline, platform: FakePlatform, form: str
) -> None:
    """A relative, scheme-relative or fragment-carrying Location to the platform keeps the
    context on the hop."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    netloc = platform.origin.split("//", 1)[1]
    hop = {
        "relative": "/v1/account",
        "scheme-relative": f"//{netloc}/v1/account",
        "fragment": f"http://{netloc}/v1/account#top",
    }[form]
    result = session.request("GET", f"{platform.url}/redirect?to={quote(hop, safe='')}")
    assert result.status == 200
    assert json.loads(result.body) == {"customer": "alice"}
