"""Fixtures: a log-secrets guard, and a platform stand-in that accepts a set of static tokens."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from static_helpers import BearerServer

from asapp_auth.testing import LogSecretsGuard


@pytest.fixture(autouse=True)
def log_guard() -> Iterator[LogSecretsGuard]:
    """Fails any test whose log records (every logger, DEBUG and up, with exc_info) hold a token
    the test made with ``new_token``."""
    LogSecretsGuard.known.clear()
    with LogSecretsGuard() as guard:
        yield guard
    guard.check()


@pytest.fixture
def new_token(log_guard: LogSecretsGuard) -> Callable[[], str]:
    """Makes random tokens that the log guard watches for."""

    def make() -> str:
        token = "tok_" + secrets.token_urlsafe(24)
        log_guard.add(token)
        return token

    return make


@pytest.fixture
def bearer_server() -> Iterator[Callable[[set[str]], BearerServer]]:
    """Starts ``BearerServer`` instances on ephemeral ports; shuts them down after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(valid: set[str]) -> BearerServer:
        state = BearerServer(valid=valid)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                if scheme != "Bearer":
                    token = self.headers.get("X-Api-Key", "")
                state.seen.append(token)
                state.headers.append(dict(self.headers.items()))
                if token in state.valid:
                    status, body, extra = 200, {"ok": True}, {}
                else:
                    status, body = 401, {"error": "invalid_token"}
                    extra = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
