"""Fault tests: a token endpoint that misbehaves on purpose, one scripted answer per request."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from asapp_auth_oauth2 import (
    InvalidGrantError,
    InvalidScopeError,
    OAuth2Error,
    TokenEndpointTimeoutError,
    TokenEndpointUnavailableError,
    TokenResponseError,
)
from authserver import Running
from conftest import SECRETS

from asapp_auth import Customer
from asapp_auth.errors import LoginRequiredError, ProviderError, ProviderTimeoutError

GOOD = {"access_token": "good-access-token", "token_type": "bearer", "expires_in": 300}


class Script:
    """Answers, in order; the last one repeats. Counts requests."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.requests = 0
        self.lock = threading.Lock()

    def next(self) -> Any:
        with self.lock:
            self.requests += 1
            index = min(self.requests, len(self.answers)) - 1
            return self.answers[index]


class _Faulty(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = self.server.auth.next()
        kind, *rest = answer if isinstance(answer, tuple) else (answer,)
        if kind == "json":
            status, body = rest[0], json.dumps(rest[1]).encode()
            self._send(status, body, "application/json", *rest[2:])
        elif kind == "raw":
            self._send(rest[0], rest[1], rest[2])
        elif kind == "slow":
            time.sleep(rest[0])
            self._send(200, json.dumps(GOOD).encode(), "application/json")
        elif kind == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "500")
            self.end_headers()
            self.wfile.write(b'{"access_token": "dropped-token", ')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _send(self, status: int, body: bytes, ctype: str, headers: Any = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def script() -> Iterator[tuple[Script, str]]:
    scripted = Script()
    running = Running(_Faulty, scripted)
    try:
        yield scripted, running.url + "/token"
    finally:
        running.stop()


@pytest.fixture
def faulty(script: tuple[Script, str], make: Any) -> Any:
    scripted, url = script
    sleeps: list[float] = []

    def build(*answers: Any, **settings: Any) -> Any:
        scripted.answers = list(answers)
        SECRETS.update({"client-secret-value", "good-access-token", "dropped-token"})
        plugin = make(
            token_endpoint=url,
            client_id="app",
            client_secret="client-secret-value",
            _sleep=sleeps.append,
            **{"max_retries": 3, "backoff_base": 0.1, "backoff_max": 1.0, **settings},
        )
        plugin.sleeps = sleeps
        plugin.script = scripted
        return plugin

    return build


def ask(plugin: Any, customer: str = "alice", refresh: bool = False) -> Any:
    return plugin.provide_context(Customer(customer), refresh, None)


def test_500s_are_retried_then_succeed(faulty: Any) -> None:
    """Two 500s then a token: three requests, two backoff waits that grow."""
    plugin = faulty(
        ("json", 500, {"error": "server_error"}), ("json", 502, {}), ("json", 200, GOOD)
    )
    assert ask(plugin).token == "good-access-token"
    assert plugin.script.requests == 3
    assert len(plugin.sleeps) == 2
    assert 0.05 <= plugin.sleeps[0] <= 0.1
    assert 0.1 <= plugin.sleeps[1] <= 0.2


def test_retry_budget_is_respected(faulty: Any) -> None:
    """A server that keeps failing gets max_retries + 1 requests, then a clear error."""
    plugin = faulty(("json", 503, {}), max_retries=2)
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        ask(plugin)
    assert plugin.script.requests == 3
    assert caught.value.attempts == 3
    assert caught.value.status_code == 503
    assert "/token" in str(caught.value)


def test_429_honours_retry_after(faulty: Any) -> None:
    """429 with Retry-After waits as long as the server asks, then succeeds."""
    plugin = faulty(("json", 429, {}, {"Retry-After": "2"}), ("json", 200, GOOD))
    assert ask(plugin).token == "good-access-token"
    assert plugin.sleeps == [pytest.approx(2.0)]


def test_429_asking_too_long_fails_at_once(faulty: Any) -> None:
    """A Retry-After beyond max_retry_after fails at once rather than waiting."""
    plugin = faulty(("json", 429, {}, {"Retry-After": "120"}), max_retry_after=10)
    with pytest.raises(TokenEndpointUnavailableError, match="max_retry_after"):
        ask(plugin)
    assert plugin.script.requests == 1
    assert plugin.sleeps == []


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (("raw", 200, b"<html><body>Sign in</body></html>", "text/html"), "HTML"),
        (("raw", 200, b'{"access_token": "x", "tok', "application/json"), "not valid JSON"),
        (("raw", 200, b"", "application/json"), "empty body"),
        (("json", 200, ["not", "an", "object"]), "JSON list"),
        (("json", 200, {**GOOD, "access_token": ""}), "access_token is empty"),
        (("json", 200, {**GOOD, "access_token": 12}), "access_token is an int"),
        (("json", 200, {"token_type": "Bearer"}), "access_token is missing"),
        (("json", 200, {**GOOD, "token_type": "mac"}), "not Bearer"),
        (("json", 200, {"access_token": "x", "expires_in": 60}), "token_type is missing"),
        (("json", 200, {**GOOD, "token_type": 7}), "token_type is an int, not Bearer"),
        (("json", 200, {**GOOD, "expires_in": -5}), "positive"),
        (("json", 200, {**GOOD, "expires_in": 0}), "positive"),
        (("json", 200, {**GOOD, "expires_in": 10**12}), "max_expires_in"),
        (("json", 200, {**GOOD, "expires_in": "soon"}), "expires_in is a str"),
        (("json", 200, {**GOOD, "expires_in": True}), "expires_in is a bool"),
        (("json", 200, {**GOOD, "refresh_token": 5}), "refresh_token is an int"),
        (("raw", 400, b"<html>Bad</html>", "text/html"), "HTML"),
    ],
)
def test_bad_answers_give_clear_errors_and_cache_nothing(
    faulty: Any, answer: Any, words: str
) -> None:
    """A malformed answer raises TokenResponseError naming the endpoint; nothing is cached."""
    plugin = faulty(answer, ("json", 200, GOOD))
    with pytest.raises(TokenResponseError) as caught:
        ask(plugin)
    assert words in str(caught.value)
    assert "/token" in str(caught.value)
    assert plugin.script.requests == 1  # a malformed answer is not retried
    assert ask(plugin).token == "good-access-token"  # nothing bad was cached
    assert plugin.script.requests == 2


def test_huge_body_is_refused(faulty: Any) -> None:
    """A body past max_response_bytes is refused without being read whole."""
    body = b'{"x": "' + b"a" * 5000 + b'"}'
    plugin = faulty(("raw", 200, body, "application/json"), max_response_bytes=2048)
    with pytest.raises(TokenResponseError, match="larger than 2048"):
        ask(plugin)


def test_dropped_connection_is_retried(faulty: Any) -> None:
    """A connection dropped mid-response is retried, and the half token is never used."""
    plugin = faulty(("drop",), ("json", 200, GOOD))
    assert ask(plugin).token == "good-access-token"
    assert plugin.script.requests == 2


def test_dropped_connection_on_a_refresh_token_is_not_retried(faulty: Any) -> None:
    """A rotating refresh token is not resent after a failure the server may have acted on."""
    SECRETS.add("refresh-token-value")
    plugin = faulty(("drop",), ("json", 200, GOOD), grant="refresh_token")
    plugin.set_refresh_token("alice", "refresh-token-value")
    with pytest.raises(TokenEndpointUnavailableError, match="not retried"):
        ask(plugin)
    assert plugin.script.requests == 1


def test_slow_server_times_out_within_the_budget(faulty: Any) -> None:
    """A server slower than the timeout is retried and then reported unavailable."""
    plugin = faulty(("slow", 1.0), timeout=0.2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(TokenEndpointUnavailableError, match="ReadTimeout"):
        ask(plugin)
    assert time.monotonic() - started < 1.0
    assert plugin.script.requests == 2


def test_connection_refused_is_retried_then_reported(make: Any) -> None:
    """Nothing listening: bounded retries, then TokenEndpointUnavailableError."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    plugin = make(
        token_endpoint=f"http://127.0.0.1:{port}/token",
        client_id="app",
        max_retries=2,
        _sleep=sleeps.append,
    )
    with pytest.raises(TokenEndpointUnavailableError, match="could not connect") as caught:
        ask(plugin)
    assert caught.value.attempts == 3
    assert len(sleeps) == 2


def test_error_answers_are_typed_and_scrubbed(faulty: Any) -> None:
    """An RFC 6749 error maps to its class with error and error_description, minus secrets."""
    plugin = faulty(
        (
            "json",
            400,
            {"error": "invalid_scope", "error_description": "bad client-secret-value\nscope"},
        )
    )
    with pytest.raises(InvalidScopeError) as caught:
        ask(plugin)
    assert caught.value.error == "invalid_scope"
    assert caught.value.error_description == "bad <redacted> scope"
    assert "client-secret-value" not in str(caught.value) + repr(caught.value)


def test_unknown_error_code_is_an_oauth2_error(faulty: Any) -> None:
    """An error code outside RFC 6749 still raises OAuth2Error carrying it."""
    plugin = faulty(("json", 403, {"error": "access_denied"}))
    with pytest.raises(OAuth2Error) as caught:
        ask(plugin)
    assert caught.value.error == "access_denied"
    assert caught.value.status_code == 403


def test_invalid_grant_for_client_credentials_is_not_a_login(faulty: Any) -> None:
    """invalid_grant on the shared grant is a ProviderError, not a customer login."""
    plugin = faulty(("json", 400, {"error": "invalid_grant"}))
    with pytest.raises(InvalidGrantError) as caught:
        ask(plugin)
    assert isinstance(caught.value, ProviderError)
    assert not isinstance(caught.value, LoginRequiredError)


def test_a_backoff_past_the_deadline_is_not_waited(faulty: Any) -> None:
    """A retry whose backoff would end past the deadline is not slept: a timeout error at once."""
    # The backoff (at least half an hour) outlasts a deadline no loaded machine can reach first.
    plugin = faulty(("json", 503, {}), ("json", 200, GOOD), backoff_base=3600, backoff_max=3600)
    with pytest.raises(TokenEndpointTimeoutError, match="answered HTTP 503") as caught:
        plugin.provide_context(Customer("alice"), False, None, deadline=time.monotonic() + 600)
    assert isinstance(caught.value, ProviderTimeoutError)
    assert caught.value.attempts == 1
    assert plugin.script.requests == 1
    assert plugin.sleeps == []


def test_a_retry_after_past_the_deadline_is_not_waited(faulty: Any) -> None:
    """A 429 asking for more time than the deadline leaves fails at once, as a timeout."""
    plugin = faulty(("json", 429, {}, {"Retry-After": "20"}), ("json", 200, GOOD))
    with pytest.raises(TokenEndpointTimeoutError):
        plugin.provide_context(Customer("alice"), False, None, deadline=time.monotonic() + 5)
    assert plugin.script.requests == 1
    assert plugin.sleeps == []


def test_retries_that_fit_before_the_deadline_are_made(faulty: Any) -> None:
    """Within a generous deadline the usual retries and backoff happen."""
    plugin = faulty(("json", 503, {}), ("json", 502, {}), ("json", 200, GOOD))
    context = plugin.provide_context(Customer("alice"), False, None, deadline=time.monotonic() + 60)
    assert context.token == "good-access-token"
    assert plugin.script.requests == 3
    assert len(plugin.sleeps) == 2
