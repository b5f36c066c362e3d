"""Helpers for testing an app's integration with asapp-auth, and a pytest plugin.

- ``FakePlatform``: a real HTTP server on 127.0.0.1 that plays the chat platform. Its API needs
  a valid bearer token; tokens can be issued, expired and revoked on demand; anonymous requests to
  protected paths are answered "login required". It records what it received.
- ``RecordingProvider``: a context provider that issues platform tokens and records its calls.
- ``LogSecretsGuard``: collects log records and fails when one holds a known secret (or when a
  watched ``TelemetryCapture`` holds a secret or a customer id).
- ``TelemetryCapture``: the spans and metrics the pipeline records, in memory (OpenTelemetry SDK).
- ``RedisServer``: a throwaway ``redis-server`` on 127.0.0.1 (when one is installed), to test a
  fleet sharing ``asapp_auth.redis_cache.RedisContextCache``; ``RedisClusterServer``: a
  throwaway Redis Cluster of such servers (3 primaries, replicas if asked).

Fixtures (the module is registered as a pytest plugin by the ``asapp-auth`` distribution):
``fake_platform``, ``recording_provider``, ``log_secrets_guard``, ``redis_server`` and
``redis_cluster`` (skipped when ``redis-server`` is not installed, failed instead when the ``CI``
variable is set).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from ._otel_capture import TelemetryCapture
from ._redis_servers import RedisClusterServer, RedisServer
from .context import AuthContext

__all__ = [
    "Exchange",
    "FakePlatform",
    "LogSecretsGuard",
    "ReceivedRequest",
    "RecordingProvider",
    "RedisClusterServer",
    "RedisServer",
    "TelemetryCapture",
    "fake_platform",
    "log_secrets_guard",
    "recording_provider",
    "redis_cluster",
    "redis_server",
]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the fake platform received it."""

    method: str
    path: str
    headers: httpx.Headers
    body: bytes
    customer_id: str | None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class _Token:
    customer_id: str
    expires_at: float  # monotonic
    revoked: bool = False


class Exchange:
    """One request to the fake platform, as a route handler sees it; ``answer`` replies."""

    def __init__(self, method: str, target: str, headers: httpx.Headers, body: bytes) -> None:
        split = urlsplit(target)
        self.method = method
        self.path = split.path
        self.query = parse_qs(split.query)
        self.headers = headers
        self.body = body
        self.response: tuple[int, dict[str, str], bytes] = (500, {}, b"")

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None

    def answer(
        self, status: int, payload: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        out = dict(headers or {})
        if payload is not None:
            out["Content-Type"] = "application/json"
        self.response = (status, out, body)


_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _serving_loop() -> asyncio.AbstractEventLoop:
    """One event loop, in a daemon thread, that serves every fake platform of the process."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, daemon=True, name="fake-platform").start()
        return _loop


class FakePlatform:
    """A chat platform API on 127.0.0.1 that authenticates customers by bearer token.

    Paths under ``/v1/`` need a valid token: none gives ``401`` with ``WWW-Authenticate: Bearer
    realm="chat"`` (login required); an unknown, expired or revoked one gives ``401`` with
    ``error="invalid_token"``. ``/v1/account`` answers the customer id; ``/v1/echo`` answers what
    was received (method and JSON body). ``/public`` needs nothing.
    ``/redirect?to=URL&status=307`` redirects. ``latency`` delays every answer. ``route`` adds
    paths, answered by a function that may block (it runs in a worker thread).

    The server is HTTP/1.1 with keep-alive on an asyncio loop of its own thread, so thousands of
    concurrent client requests do not fight a thread per connection for the GIL.
    """

    def __init__(self, *, default_lifetime: float = 300.0, latency: float = 0.0) -> None:
        self.default_lifetime = default_lifetime
        self.latency = latency
        self.received: list[ReceivedRequest] = []
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._routes: dict[str, Callable[[Exchange], None]] = {}
        self._transports: set[asyncio.BaseTransport] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakePlatform:
        loop = self._loop = _serving_loop()
        transports = self._transports

        class Tracked(asyncio.StreamReaderProtocol):
            # Held until the connection is lost: a half-closed transport whose handler ended
            # early is otherwise garbage before anyone closes it.
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self._tracked = transport
                transports.add(transport)
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                transports.discard(self._tracked)
                super().connection_lost(exc)

        def protocol() -> Tracked:
            return Tracked(asyncio.StreamReader(), self._connection)

        start = loop.create_server(protocol, "127.0.0.1", 0, backlog=1024)
        self._server = asyncio.run_coroutine_threadsafe(start, loop).result(5)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            await asyncio.sleep(0.01)  # connections just accepted get their handler task
            # Only our handlers: cancelling asyncio's own accept task would leak its socket.
            tasks = list(self._handlers)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Handlers that never ran leave theirs open, and a closing transport may still wait
            # to flush to a client that is gone: abort them all.
            for transport in list(self._transports):
                transport.abort()  # type: ignore[attr-defined]
            await server.wait_closed()
            await asyncio.sleep(0.01)  # the transports close their sockets

        # The loop goes on serving other platforms, and finishes any closing left over.
        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        self._loop = self._server = None

    def __enter__(self) -> FakePlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``, which is also its origin."""
        assert self._server is not None, "start() the platform first"
        return f"http://127.0.0.1:{self._port}"

    origin = url

    # -- tokens ---------------------------------------------------------------------------------

    def issue_token(self, customer_id: str, lifetime: float | None = None) -> str:
        """A new valid token for ``customer_id``, expiring after ``lifetime`` seconds."""
        token = f"tok-{secrets.token_urlsafe(16)}"
        life = self.default_lifetime if lifetime is None else lifetime
        with self._lock:
            self._tokens[token] = _Token(customer_id, time.monotonic() + life)
        LogSecretsGuard.known.add(token)
        LogSecretsGuard.customers.add(customer_id)
        return token

    def context_for(self, customer_id: str, lifetime: float | None = None) -> AuthContext:
        """A context holding a new token, with its expiry."""
        life = self.default_lifetime if lifetime is None else lifetime
        token = self.issue_token(customer_id, life)
        return AuthContext({"Auth": {"Token": token}}, expires_in=life)

    def expire(self, token: str | None = None, *, customer_id: str | None = None) -> None:
        """Make ``token`` (every token when ``None``, or every token of ``customer_id``)
        expired, as the platform sees it."""
        with self._lock:
            for key, item in self._tokens.items():
                if customer_id is not None and item.customer_id != customer_id:
                    continue
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

    def route(self, path: str, handler: Callable[[Exchange], None]) -> None:
        """Answer ``path`` with ``handler(exchange)`` instead of the built-in routes."""
        self._routes[path] = handler

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.received if r.path == path]

    # -- serving --------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                raw: list[tuple[str, str]] = []
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    raw.append((name.strip(), value.strip()))
                headers = httpx.Headers(raw)
                body = await _read_body(reader, headers)
                exchange = Exchange(method, target, headers, body)
                if self.latency:
                    await asyncio.sleep(self.latency)
                if exchange.path in self._routes:
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._routes[exchange.path], exchange
                    )
                else:
                    self._answer(exchange)
                status, out, payload = exchange.response
                head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
                head += [f"{name}: {value}" for name, value in out.items()]
                head.append(f"Content-Length: {len(payload)}")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass  # the client went away, or the platform is stopping
        finally:
            self._handlers.discard(task)
            writer.close()

    def _answer(self, exchange: Exchange) -> None:
        token = exchange.token
        customer = self.customer_of(token)
        self.received.append(
            ReceivedRequest(
                exchange.method,
                exchange.path,
                exchange.headers,
                exchange.body,
                customer,
            )
        )
        path = exchange.path
        if path == "/public":
            exchange.answer(200, {"ok": True})
        elif path == "/redirect":
            status = int(exchange.query.get("status", ["302"])[0])
            exchange.answer(status, None, {"Location": exchange.query["to"][0]})
        elif path.startswith("/v1/"):
            if token is None:
                challenge = 'Bearer realm="chat"'
                exchange.answer(401, {"error": "login_required"}, {"WWW-Authenticate": challenge})
            elif customer is None:
                challenge = 'Bearer realm="chat", error="invalid_token"'
                exchange.answer(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})
            elif path == "/v1/echo":
                try:
                    document = json.loads(exchange.body) if exchange.body else None
                except ValueError:
                    document = None
                exchange.answer(
                    200, {"customer": customer, "method": exchange.method, "json": document}
                )
            else:
                exchange.answer(200, {"customer": customer})
        else:
            exchange.answer(404, {"error": "not_found"})


async def _read_body(reader: asyncio.StreamReader, headers: httpx.Headers) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readline()
    length = int(headers.get("content-length") or 0)
    return await reader.readexactly(length) if length else b""


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
    # Every customer a token was issued for: logs may name them, telemetry never.
    customers: set[str] = set()  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.extra: set[str] = set()
        # A TelemetryCapture whose spans and metric points are scanned too (``watch``).
        self.telemetry: TelemetryCapture | None = None
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
        if self.telemetry is not None:
            ids = {c for c in self.customers if len(c) >= 4}
            for text in self.telemetry.texts():
                if any(s in text for s in secrets_ | ids):
                    found.append(f"telemetry: a secret or customer id appears in {text[:80]!r}")
        return found

    def watch(self, capture: TelemetryCapture) -> None:
        """Scan what ``capture`` records too, for secrets and customer ids."""
        self.telemetry = capture

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

    def _need_redis_server() -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            message = "redis-server is not installed (apt-get install redis-server)"
            if os.environ.get("CI"):
                pytest.fail(message + "; CI runs every test")
            pytest.skip(message)

    @pytest.fixture(scope="session")
    def redis_server() -> Iterator[RedisServer]:
        """A started ``RedisServer`` shared by the session's tests (use a namespace per test)."""
        _need_redis_server()
        with RedisServer() as server:
            yield server

    @pytest.fixture(scope="session")
    def redis_cluster() -> Iterator[RedisClusterServer]:
        """A started 3-primary ``RedisClusterServer`` shared by the session's tests (use a
        namespace per test; a test that kills or moves things starts a cluster of its own)."""
        _need_redis_server()
        with RedisClusterServer() as cluster:
            yield cluster

    @pytest.fixture
    def log_secrets_guard() -> Iterator[LogSecretsGuard]:
        """Fails the test when a log record holds a token issued during it, or an added secret."""
        LogSecretsGuard.known.clear()
        LogSecretsGuard.customers.clear()
        with LogSecretsGuard() as guard:
            yield guard
        guard.check()
