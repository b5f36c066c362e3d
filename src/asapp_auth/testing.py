"""Helpers for testing an app's integration with asapp-auth, and a pytest plugin.

- ``FakePlatform``: a real HTTP server on 127.0.0.1 that plays the chat platform. Its API needs
  a valid bearer token; tokens can be issued, expired and revoked on demand; anonymous requests to
  protected paths are answered "login required". It records what it received.
- ``RecordingProvider``: a context provider that issues platform tokens and records its calls.
- ``LogSecretsGuard``: collects log records and fails when one holds a known secret.

Fixtures (the module is registered as a pytest plugin by the ``asapp-auth`` distribution):
``fake_platform``, ``recording_provider``, ``log_secrets_guard``.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .context import AuthContext

__all__ = [
    "FakePlatform",
    "LogSecretsGuard",
    "ReceivedRequest",
    "RecordingProvider",
    "fake_platform",
    "log_secrets_guard",
    "recording_provider",
]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the fake platform received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    customer_id: str | None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class _Token:
    customer_id: str
    expires_at: float  # monotonic
    revoked: bool = False


@dataclass
class _Routes:
    # path -> status answered "login required" for anonymous callers
    protected: tuple[str, ...] = ("/v1/",)
    extra: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)


class FakePlatform:
    """A chat platform API on 127.0.0.1 that authenticates customers by bearer token.

    Paths under ``/v1/`` need a valid token: none gives ``401`` with ``WWW-Authenticate: Bearer
    realm="chat"`` (login required); an unknown, expired or revoked one gives ``401`` with
    ``error="invalid_token"``. ``/v1/account`` answers the customer id; ``/v1/echo`` answers what
    was received (method, headers, JSON body). ``/public`` needs nothing.
    ``/redirect?to=URL&status=307`` redirects. ``latency`` delays every answer.
    """

    def __init__(self, *, default_lifetime: float = 300.0, latency: float = 0.0) -> None:
        self.default_lifetime = default_lifetime
        self.latency = latency
        self.received: list[ReceivedRequest] = []
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._routes = _Routes()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakePlatform:
        platform = self

        class Handler(_Handler):
            owner = platform

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``, which is also its origin."""
        assert self._server is not None, "start() the platform first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    origin = url

    # -- tokens ---------------------------------------------------------------------------------

    def issue_token(self, customer_id: str, lifetime: float | None = None) -> str:
        """A new valid token for ``customer_id``, expiring after ``lifetime`` seconds."""
        token = f"tok-{secrets.token_urlsafe(16)}"
        life = self.default_lifetime if lifetime is None else lifetime
        with self._lock:
            self._tokens[token] = _Token(customer_id, time.monotonic() + life)
        LogSecretsGuard.known.add(token)
        return token

    def context_for(self, customer_id: str, lifetime: float | None = None) -> AuthContext:
        """A context holding a new token, with its expiry."""
        life = self.default_lifetime if lifetime is None else lifetime
        token = self.issue_token(customer_id, life)
        return AuthContext({"Auth": {"Token": token}}, expires_in=life)

    def expire(self, token: str | None = None) -> None:
        """Make ``token`` (every token when ``None``) expired, as the platform sees it."""
        with self._lock:
            for key, item in self._tokens.items():
                if token is None or key == token:
                    item.expires_at = 0.0

    def revoke(self, token: str) -> None:
        with self._lock:
            if token in self._tokens:
                self._tokens[token].revoked = True

    def customer_of(self, token: str | None) -> str | None:
        """The customer a currently valid token belongs to, or ``None``."""
        if token is None:
            return None
        with self._lock:
            item = self._tokens.get(token)
            if item is None or item.revoked or time.monotonic() >= item.expires_at:
                return None
            return item.customer_id

    def route(self, path: str, handler: Callable[[BaseHTTPRequestHandler], None]) -> None:
        """Answer ``path`` with ``handler(request_handler)`` instead of the built-in routes."""
        self._routes.extra[path] = handler

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.received if r.path == path]


class _Handler(BaseHTTPRequestHandler):
    owner: FakePlatform
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test output stays quiet; ``received`` records every request

    def _answer(
        self, status: int, payload: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        owner = self.owner
        if owner.latency:
            time.sleep(owner.latency)
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        auth = self.headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else None
        customer = owner.customer_of(token)
        owner.received.append(
            ReceivedRequest(self.command, split.path, dict(self.headers.items()), body, customer)
        )
        extra = owner._routes.extra.get(split.path)
        if extra is not None:
            extra(self)
            return
        if split.path == "/public":
            self._answer(200, {"ok": True})
            return
        if split.path == "/redirect":
            query = parse_qs(split.query)
            status = int(query.get("status", ["302"])[0])
            self._answer(status, None, {"Location": query["to"][0]})
            return
        if split.path.startswith("/v1/"):
            if token is None:
                self._answer(
                    401, {"error": "login_required"}, {"WWW-Authenticate": 'Bearer realm="chat"'}
                )
                return
            if customer is None:
                challenge = 'Bearer realm="chat", error="invalid_token"'
                self._answer(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})
                return
            if split.path == "/v1/echo":
                try:
                    document = json.loads(body) if body else None
                except ValueError:
                    document = None
                self._answer(200, {"customer": customer, "method": self.command, "json": document})
                return
            self._answer(200, {"customer": customer})
            return
        self._answer(404, {"error": "not_found"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class RecordingProvider:
    """A context provider that issues platform tokens and records each call.

    Use it as a ``context_provider`` (iOS shape: ``provider(needs_refresh)``). ``calls`` lists the
    ``needs_refresh`` of each call; ``delay`` makes each call block that long; ``fail`` makes the
    next calls raise it.
    """

    def __init__(
        self,
        platform: FakePlatform,
        customer_id: str,
        *,
        lifetime: float | None = None,
        delay: float = 0.0,
    ) -> None:
        self.platform = platform
        self.customer_id = customer_id
        self.lifetime = lifetime
        self.delay = delay
        self.fail: BaseException | None = None
        self.calls: list[bool] = []
        self.tokens: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, needs_refresh: bool) -> AuthContext:
        with self._lock:
            self.calls.append(needs_refresh)
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        context = self.platform.context_for(self.customer_id, self.lifetime)
        with self._lock:
            self.tokens.append(context["Auth"]["Token"])
        return context

    @property
    def refreshes(self) -> int:
        return sum(1 for asked in self.calls if asked)


class LogSecretsGuard(logging.Handler):
    """Collects every log record; ``check()`` fails when one holds a known secret.

    ``LogSecretsGuard.known`` is filled by ``FakePlatform.issue_token``; add your own with ``add``.
    """

    known: set[str] = set()  # noqa: RUF012 - shared on purpose: every token issued in a test

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.extra: set[str] = set()
        self._formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def add(self, *values: str) -> None:
        self.extra.update(v for v in values if v)

    def leaks(self) -> list[str]:
        secrets_ = {s for s in self.known | self.extra if len(s) >= 6}
        found = []
        for record in list(self.records):
            text = self._formatter.format(record)
            for secret in secrets_:
                if secret in text:
                    found.append(f"{record.name}: a secret appears in {record.getMessage()[:80]!r}")
        return found

    def check(self) -> None:
        leaks = self.leaks()
        if leaks:
            raise AssertionError("secrets in log records:\n" + "\n".join(leaks))

    def __enter__(self) -> LogSecretsGuard:
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)


try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pass
else:

    @pytest.fixture
    def fake_platform() -> Iterator[FakePlatform]:
        """A started ``FakePlatform``, stopped after the test."""
        with FakePlatform() as platform:
            yield platform

    @pytest.fixture
    def recording_provider(fake_platform: FakePlatform) -> RecordingProvider:
        """A ``RecordingProvider`` for customer ``alice`` on ``fake_platform``."""
        return RecordingProvider(fake_platform, "alice")

    @pytest.fixture
    def log_secrets_guard() -> Iterator[LogSecretsGuard]:
        """Fails the test when a log record holds a token issued during it, or an added secret."""
        LogSecretsGuard.known.clear()
        with LogSecretsGuard() as guard:
            yield guard
        guard.check()
