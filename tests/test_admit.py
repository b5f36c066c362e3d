"""What a pipeline accepts as a context: a credential its attacher sends, within a size limit;
and what a server's 431 or dropped connection does, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asapp_auth import AuthContext, AuthPipeline, ContextHeader, Customer, hookimpl
from asapp_auth._any_client import KINDS, open_client
from asapp_auth.errors import (
    AsappAuthError,
    ConfigurationError,
    InvalidContextError,
    TokenRejectedError,
)
from asapp_auth.testing import Exchange, FakePlatform, RecordingProvider

KiB = 1024


class HeaderLimitServer:
    """An HTTP/1.1 server on 127.0.0.1 that takes request heads of up to ``limit`` bytes.

    A larger head is read whole, then answered ``431`` (``mode="431"``) or met by closing the
    connection without an answer (``mode="close"``). Any other request gets ``200``. ``heads``
    lists the size of each head received, ``tokens`` the bearer tokens that were let through.
    ``hold``, when set, is a barrier every oversized request waits on before it is answered.
    """

    def __init__(self, limit: int, mode: str = "431") -> None:
        self.limit = limit
        self.mode = mode
        self.hold: threading.Barrier | None = None
        self.heads: list[int] = []
        self.tokens: list[str] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.origin = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return  # closed
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0]
            size = len(head) - len(head.split(b"\r\n", 1)[0])  # without the request line
            self.heads.append(size)
            if size > self.limit:
                if self.hold is not None:
                    self.hold.wait(10)
                if self.mode == "close":
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "authorization":
                    self.tokens.append(value.strip().removeprefix("Bearer "))
            body = b'{"ok": true}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )

    def close(self) -> None:
        self._socket.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def small_server() -> Iterator[HeaderLimitServer]:
    """A server that answers 431 to a request head over 8 KiB, as nginx or Apache would."""
    server = HeaderLimitServer(8 * KiB)
    yield server
    server.close()


@pytest.fixture
def closing_server() -> Iterator[HeaderLimitServer]:
    """A server that closes the connection, unanswered, on a request head over 8 KiB."""
    server = HeaderLimitServer(8 * KiB, mode="close")
    yield server
    server.close()


class Sizes:
    """A provider whose tokens have the given sizes, in turn (the last one from then on)."""

    def __init__(self, *sizes: int) -> None:
        self.sizes = list(sizes)
        self.calls: list[bool] = []

    def __call__(self, needs_refresh: bool) -> dict[str, Any]:
        size = self.sizes[min(len(self.calls), len(self.sizes) - 1)]
        self.calls.append(needs_refresh)
        token = f"s3cr3t-{len(self.calls)}-".ljust(size, "x")
        return {"Auth": {"Token": token}}


class Expired:
    """Records on_token_expired calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def on_token_expired(self, customer: Customer, context: AuthContext) -> None:
        self.calls.append(customer.id)


# -- contexts that authenticate nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"Foo": 1}, "it has no Auth (its keys: 'Foo')"),
        ({"Auht": {"Token": "t-s3cr3t"}}, "'Auht' (did you mean 'Auth'?)"),
        ({"CustomerInfo": {"Tier": "gold"}}, "its keys: 'CustomerInfo'"),
        ({"Auth": {}}, "Auth holds no Token, Headers, Cookies or Body"),
        ({"Auth": {"Scopes": ["read"]}}, "(it holds 'Scopes')"),
        ({"Auth": {"Tokn": "t-s3cr3t"}}, "'Tokn' (did you mean 'Token'?)"),
        ({"Auth": {"Headers": {}}}, "Auth.Headers holds no value"),
        ({"Auth": {"Headers": {"X-Key": ""}, "Body": {}}}, "Auth.Headers and Auth.Body hold"),
    ],
)
def test_a_context_that_attaches_no_credential_is_refused_before_anything_is_sent(
    platform: FakePlatform, context: dict[str, Any], named: str
) -> None:
    """A context from which the default attacher sends nothing is refused, naming what it
    holds and the keys it may have meant; nothing is cached or sent, and the provider is asked
    again by the next request."""
    calls: list[bool] = []

    def provider(needs_refresh: bool) -> dict[str, Any]:
        calls.append(needs_refresh)
        return context

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client:
        for _ in range(2):
            with pytest.raises(InvalidContextError) as caught:
                client.get(f"{platform.url}/v1/account")
            message = str(caught.value)
            assert "the customer's context_provider returned a context that attaches no" in message
            assert named in message
            assert "attach=" in message
            assert "s3cr3t" not in message
    assert caught.value.plugin == "customer-provider"
    assert calls == [False, False]
    assert platform.received == []
    assert pipeline.cached() is None


@pytest.mark.parametrize(
    "context",
    [{"Auth": {"Token": None}}, {"auth": {"token": "t-s3cr3t"}}, {"Auth": {"token": "t-s3cr3t"}}],
)
def test_a_context_misspelt_or_with_a_none_token_is_refused_naming_the_plugin(
    platform: FakePlatform, context: dict[str, Any]
) -> None:
    """A None token or a schema key in the wrong case is refused from a plugin too, naming
    the plugin; the platform receives nothing, so no 401 is blamed on a refresh."""

    class Plugin:
        @hookimpl
        def provide_context(self, customer: Customer, needs_refresh: bool) -> dict[str, Any]:
            return context

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.register(Plugin(), "mine")
    pipeline.load("alice")
    with httpx.Client(auth=pipeline) as client, pytest.raises(InvalidContextError) as caught:
        client.get(f"{platform.url}/v1/account")
    assert "plugin 'mine'" in str(caught.value)
    assert caught.value.plugin == "mine"
    assert platform.received == []


def test_a_context_with_only_a_body_or_a_cookie_is_a_credential(platform: FakePlatform) -> None:
    """Body fields or a cookie alone are credentials the default attacher sends: accepted."""
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", lambda needs_refresh: {"Auth": {"Cookies": {"sid": "c-s3cr3t"}}})
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/public")
        pipeline.set_customer("bob", lambda needs_refresh: {"Auth": {"Body": {"s": "b-s3cr3t"}}})
        client.post(f"{platform.url}/public", json={"a": 1})
    assert platform.received[0].headers["cookie"] == "sid=c-s3cr3t"
    assert json.loads(platform.received[1].body) == {"a": 1, "s": "b-s3cr3t"}


def test_an_attacher_of_the_apps_own_decides_what_authenticates(platform: FakePlatform) -> None:
    """With attach= a function or ContextHeader, keys outside Auth are the app's to send: a
    context without Auth is accepted and reaches the platform as the attacher puts it."""
    token = platform.issue_token("alice")

    def session_header(request: httpx.Request, context: AuthContext) -> None:
        request.headers["Authorization"] = f"Bearer {context['ExternalSessionId']}"

    own = AuthPipeline(origins=[platform.origin], attach=session_header)
    own.load("alice", lambda needs_refresh: {"ExternalSessionId": token})
    header = AuthPipeline(origins=[platform.origin], attach=ContextHeader())
    header.load("alice", lambda needs_refresh: {"CustomerInfo": {"Tier": "gold"}})
    with httpx.Client() as client:
        assert client.get(f"{platform.url}/v1/account", auth=own).json() == {"customer": "alice"}
        client.get(f"{platform.url}/public", auth=header)
    sent = platform.received[-1].headers["x-asapp-context"]
    assert json.loads(sent) == {"CustomerInfo": {"Tier": "gold"}}


# -- the size limit -------------------------------------------------------------------------------


def test_a_context_over_max_context_bytes_is_refused_and_nothing_cached(
    platform: FakePlatform,
) -> None:
    """A 1 MiB token is refused with InvalidContextError naming the provider, the sizes and
    the setting; nothing is sent or cached, and the next request asks the provider again."""
    provider = Sizes(1024 * KiB)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client:
        for _ in range(2):
            with pytest.raises(InvalidContextError) as caught:
                client.get(f"{platform.url}/v1/account")
    message = str(caught.value)
    assert "the customer's context_provider returned a context of 1,048,6" in message
    assert "over max_context_bytes=16,384" in message
    assert "Nothing was cached" in message
    assert "s3cr3t" not in message
    assert provider.calls == [False, False]
    assert platform.received == []
    assert pipeline.cached() is None


def test_the_limit_counts_what_the_cache_keeps_as_well_as_what_is_sent() -> None:
    """Parts the default attacher does not send (CustomerInfo, the provider's state) count
    too: the cache would keep them for every customer."""
    big = "v" * (17 * KiB)
    pipeline = AuthPipeline(origins=["https://api.chat.example"])
    pipeline.load(
        "alice", lambda needs_refresh: {"Auth": {"Token": "t"}, "CustomerInfo": {"a": big}}
    )
    with pytest.raises(InvalidContextError, match=r"\(25 on each request, 17,4\d\d kept"):
        pipeline.get_context()
    pipeline.set_customer(
        "bob", lambda needs_refresh: AuthContext({"Auth": {"Token": "t"}}, state={"rt": big})
    )
    with pytest.raises(InvalidContextError, match="kept in the cache"):
        pipeline.get_context()
    assert pipeline.cached() is None


@pytest.mark.parametrize(
    ("attach", "context", "size"),
    [
        # What is sent: "Authorization: Bearer " and the line end are 24 bytes beside the token
        # (its JSON, {"Auth":{"Token":"..."}}, is 21).
        (None, {"Auth": {"Token": "x" * 76}}, 100),
        # The header name and line end beside the context's JSON: 7 bytes.
        (ContextHeader("X-C"), {"Auth": {"Token": "x" * 72}}, 100),
        # What is kept: the cookie line is 13 bytes beside the value, its JSON 29.
        (None, {"Auth": {"Cookies": {"a": "x" * 71}}}, 100),
    ],
)
def test_max_context_bytes_is_inclusive_and_counts_bytes_as_sent_and_kept(
    attach: Any, context: dict[str, Any], size: int
) -> None:
    """A context as large as the limit, by the larger of what goes on a request and what the
    cache keeps, is accepted; one byte less of limit refuses it."""
    exact = AuthPipeline(
        origins=["https://api.chat.example"], attach=attach, max_context_bytes=size
    )
    exact.set_customer("alice", lambda needs_refresh: context)
    assert exact.get_context() is not None
    under = AuthPipeline(
        origins=["https://api.chat.example"], attach=attach, max_context_bytes=size - 1
    )
    under.set_customer("alice", lambda needs_refresh: context)
    with pytest.raises(InvalidContextError, match=f"a context of {size} bytes"):
        under.get_context()


@pytest.mark.parametrize("value", [0, -1, 1.5, "16k", True, None])
def test_max_context_bytes_must_be_a_whole_number_above_zero(value: object) -> None:
    """A limit that is not a whole number of bytes above 0 is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="max_context_bytes"):
        AuthPipeline(origins=["https://api.chat.example"], max_context_bytes=value)  # type: ignore[arg-type]


def test_max_context_bytes_is_a_configuration_key(tmp_path: Path) -> None:
    """``max_context_bytes`` in the configuration file sets the limit; a bad value is reported
    with its key path."""
    good = tmp_path / "asapp-auth.toml"
    good.write_text('origins = ["https://api.chat.example"]\nmax_context_bytes = 64\n')
    pipeline = AuthPipeline.from_config(good)
    pipeline.set_customer("alice", lambda needs_refresh: {"Auth": {"Token": "x" * 41}})
    with pytest.raises(InvalidContextError, match="over max_context_bytes=64"):
        pipeline.get_context()
    bad = tmp_path / "bad.toml"
    bad.write_text('origins = ["https://api.chat.example"]\nmax_context_bytes = "16k"\n')
    with pytest.raises(ConfigurationError, match="max_context_bytes: expected a whole number"):
        AuthPipeline.from_config(bad)


def test_a_context_within_the_default_limit_reaches_the_platform(platform: FakePlatform) -> None:
    """The default limit fits real contexts: a 15 KiB one is sent as it is."""
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", Sizes(15 * KiB))
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/public")
    assert len(platform.received[0].headers["authorization"]) == 15 * KiB + len("Bearer ")


# -- 431 and dropped connections ------------------------------------------------------------------


def test_a_431_drops_the_context_and_retries_once_with_a_fresh_one(
    small_server: HeaderLimitServer,
) -> None:
    """A 431 to a request that carried a context is the context's: it is dropped from the
    cache, on_token_expired runs, the provider is asked with needs_refresh=True and the request
    sent once more, with the new context."""
    provider = Sizes(10 * KiB, 1 * KiB)
    expired = Expired()
    pipeline = AuthPipeline(origins=[small_server.origin])
    pipeline.register(expired)
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{small_server.origin}/v1/account").status_code == 200
        assert client.get(f"{small_server.origin}/v1/account").status_code == 200
    assert provider.calls == [False, True]
    assert expired.calls == ["alice"]
    assert [size > 8 * KiB for size in small_server.heads] == [True, False, False]
    cached = pipeline.cached()
    assert cached is not None
    assert cached.context.token == small_server.tokens[0] == small_server.tokens[1]


def test_a_second_431_raises_naming_the_origin_and_never_loops(
    small_server: HeaderLimitServer,
) -> None:
    """A 431 again after the refresh raises TokenRejectedError (status 431) naming the origin
    and what to do: two requests reach the server, the provider is asked twice."""
    provider = Sizes(10 * KiB)
    pipeline = AuthPipeline(origins=[small_server.origin])
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client, pytest.raises(TokenRejectedError) as caught:
        client.get(f"{small_server.origin}/v1/account")
    error = caught.value
    assert error.status_code == 431
    assert error.origin == small_server.origin
    assert f"{small_server.origin} refused the request headers as too large (HTTP 431)" in str(
        error
    )
    assert "max_context_bytes" in str(error)
    assert "s3cr3t" not in str(error)
    assert provider.calls == [False, True]
    assert len(small_server.heads) == 2


def test_threads_refused_with_431_at_once_share_one_refresh(
    small_server: HeaderLimitServer,
) -> None:
    """Twelve requests that all carried the oversized context get their 431s together: the
    provider is asked once for the first context and once for the refresh, and every request
    succeeds on its retry with the new one."""
    provider = Sizes(10 * KiB, 1 * KiB)
    pipeline = AuthPipeline(origins=[small_server.origin])
    pipeline.load("alice", provider)
    pipeline.get_context()  # every thread starts from the oversized context
    threads = 12
    start = threading.Barrier(threads)
    # No 431 is answered before all twelve requests have reached the server with the old context.
    small_server.hold = threading.Barrier(threads)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(auth=pipeline, limits=limits) as client:

        def call() -> None:
            start.wait(10)
            statuses.append(client.get(f"{small_server.origin}/v1/account").status_code)

        workers = [threading.Thread(target=call) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
    assert statuses == [200] * threads
    assert provider.calls == [False, True]
    assert [size > 8 * KiB for size in small_server.heads].count(True) == threads
    assert len(small_server.tokens) == threads
    assert set(small_server.tokens) == {small_server.tokens[0]}


def test_tasks_refused_with_431_at_once_share_one_refresh(
    small_server: HeaderLimitServer,
) -> None:
    """Under asyncio too, twenty requests refused together with 431 share one refresh."""
    provider = Sizes(10 * KiB, 1 * KiB)
    pipeline = AuthPipeline(origins=[small_server.origin])
    pipeline.load("alice", provider)
    pipeline.get_context()
    tasks = 20
    small_server.hold = threading.Barrier(tasks)

    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=pipeline) as client:
            url = f"{small_server.origin}/v1/account"
            responses = await asyncio.gather(*(client.get(url) for _ in range(tasks)))
        return [response.status_code for response in responses]

    assert asyncio.run(main()) == [200] * tasks
    assert provider.calls == [False, True]
    assert [size > 8 * KiB for size in small_server.heads].count(True) == tasks


def test_a_431_under_asyncio_is_handled_the_same(small_server: HeaderLimitServer) -> None:
    """An AsyncClient's 431 refreshes once and retries; a second 431 raises TokenRejectedError."""
    retried = Sizes(10 * KiB, 1 * KiB)
    refused = Sizes(10 * KiB)

    async def main() -> tuple[int, int]:
        first = AuthPipeline(origins=[small_server.origin])
        first.load("alice", retried)
        second = AuthPipeline(origins=[small_server.origin])
        second.load("bob", refused)
        async with httpx.AsyncClient() as client:
            ok = await client.get(f"{small_server.origin}/v1/account", auth=first)
            with pytest.raises(TokenRejectedError) as caught:
                await client.get(f"{small_server.origin}/v1/account", auth=second)
        return ok.status_code, caught.value.status_code

    assert asyncio.run(main()) == (200, 431)
    assert retried.calls == refused.calls == [False, True]
    assert len(small_server.heads) == 4


def test_a_431_to_an_anonymous_request_is_returned(small_server: HeaderLimitServer) -> None:
    """A 431 to a request that carried no context is the app's own headers': it is returned."""
    pipeline = AuthPipeline(origins=[small_server.origin])
    pipeline.load()
    with httpx.Client(auth=pipeline) as client:
        response = client.get(f"{small_server.origin}/", headers={"X-Big": "x" * (9 * KiB)})
    assert response.status_code == 431
    assert len(small_server.heads) == 1


def test_a_connection_closed_on_large_headers_raises_httpx_error_and_keeps_the_context(
    closing_server: HeaderLimitServer,
) -> None:
    """A server that closes the connection on a large head gives the app httpx's own error, as
    the docs say: the context stays cached and no provider is asked again (the pipeline sees no
    response, and the request may have been acted on); set to what the platform takes,
    max_context_bytes refuses the context before it is sent."""
    provider = Sizes(10 * KiB)
    pipeline = AuthPipeline(origins=[closing_server.origin])
    pipeline.load("alice", provider)
    url = f"{closing_server.origin}/v1/account"
    with httpx.Client(auth=pipeline) as client:
        for _ in range(2):  # the first fetch, then the cached path
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(url)
    assert provider.calls == [False]
    assert pipeline.cached() is not None
    assert len(closing_server.heads) == 2

    limited = AuthPipeline(origins=[closing_server.origin], max_context_bytes=8 * KiB)
    limited.load("alice", Sizes(10 * KiB))
    with httpx.Client(auth=limited) as client, pytest.raises(InvalidContextError):
        client.get(url)
    assert len(closing_server.heads) == 2


def test_a_connection_closed_under_asyncio_is_handled_the_same(
    closing_server: HeaderLimitServer,
) -> None:
    """An AsyncClient's dropped connection gives httpx's error; the provider is not asked again."""
    provider = Sizes(10 * KiB)
    pipeline = AuthPipeline(origins=[closing_server.origin])
    pipeline.load("alice", provider)

    async def main() -> int:
        dropped = 0
        async with httpx.AsyncClient(auth=pipeline) as client:
            for _ in range(2):
                try:
                    await client.get(f"{closing_server.origin}/v1/account")
                except httpx.RemoteProtocolError:
                    dropped += 1
        return dropped

    assert asyncio.run(main()) == 2
    assert provider.calls == [False]
    assert pipeline.cached() is not None


def test_a_platform_route_answering_431_is_classified_like_a_server(
    platform: FakePlatform,
) -> None:
    """FakePlatform routes can play a server with a header limit: a 431 there also refreshes."""
    recording = RecordingProvider(platform, "alice")
    answers = iter([431, 200])

    def limited(exchange: Exchange) -> None:
        exchange.answer(next(answers), {})

    platform.route("/limited", limited)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", recording)
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/limited").status_code == 200
    assert recording.calls == [False, True]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_client_refreshes_once_on_a_431_and_raises_on_a_second(
    kind: str, small_server: HeaderLimitServer
) -> None:
    """httpx, httpx2, requests and aiohttp all take a 431 on a context the same way: one
    refresh and one retry, then TokenRejectedError (status 431) when it comes again."""
    retried = Sizes(10 * KiB, 1 * KiB)
    pipeline = AuthPipeline(origins=[small_server.origin])
    pipeline.load("alice", retried)
    client = open_client(kind, pipeline)
    try:
        assert client.request("GET", f"{small_server.origin}/v1/account").status == 200
        pipeline.set_customer("bob", Sizes(10 * KiB))
        with pytest.raises(TokenRejectedError) as caught:
            client.request("GET", f"{small_server.origin}/v1/account")
    finally:
        client.close()
    assert caught.value.status_code == 431
    assert retried.calls == [False, True]
    assert [size > 8 * KiB for size in small_server.heads] == [True, False, True, True]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_client_raises_its_own_error_on_a_dropped_connection(
    kind: str, closing_server: HeaderLimitServer
) -> None:
    """On every client a connection closed on large headers is the client's own error, not
    an asapp-auth one, and the provider is not asked again."""
    provider = Sizes(10 * KiB)
    pipeline = AuthPipeline(origins=[closing_server.origin])
    pipeline.load("alice", provider)
    client = open_client(kind, pipeline)
    errors: list[Exception] = []
    try:
        for _ in range(2):
            try:
                client.request("GET", f"{closing_server.origin}/v1/account")
            except Exception as exc:  # each client raises its own kind
                errors.append(exc)
    finally:
        client.close()
    assert len(errors) == 2
    assert not any(isinstance(error, AsappAuthError) for error in errors)
    assert provider.calls == [False]


def test_requests_releases_the_response_it_raises_on(small_server: HeaderLimitServer) -> None:
    """When the requests adapter raises TokenRejectedError from its response hook, the refused
    response is closed: its socket is not left for the garbage collector to find open."""
    pytest.importorskip("requests")

    def refused_twice() -> int:
        pipeline = AuthPipeline(origins=[small_server.origin])
        pipeline.load("bob", Sizes(10 * KiB))
        client = open_client("requests", pipeline)
        try:
            with pytest.raises(TokenRejectedError) as caught:
                client.request("GET", f"{small_server.origin}/v1/account")
        finally:
            client.close()
        return caught.value.status_code

    assert refused_twice() == 431
    # The error's traceback held the hook's frames; freed with them, an unclosed socket would
    # be reported here (an unraisable ResourceWarning, an error under this suite's filters).
    gc.collect()
