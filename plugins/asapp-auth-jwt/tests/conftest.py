"""Shared fixtures: keys for every algorithm, two independent verifiers, a log-secrets guard
and a platform stand-in that verifies Bearer JWTs with a published JWKS."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt as pyjwt
import pytest
from asapp_auth_jwt import ALGORITHMS, Signer
from jwt_helpers import SESSION_SECRETS, JwksServer, key_for

from asapp_auth.testing import LogSecretsGuard


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> str:
    """Each supported algorithm in turn."""
    return str(request.param)


@pytest.fixture
def signer(algorithm: str) -> Signer:
    """A signer for the current algorithm."""
    return Signer(key_for(algorithm), algorithm=algorithm)


@pytest.fixture(autouse=True)
def log_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogSecretsGuard]:
    """Fails any test whose log records (every logger, DEBUG and up, with exc_info) hold a key,
    a secret, or a token signed during the test."""
    LogSecretsGuard.known.clear()
    original = Signer.sign

    def recording_sign(self: Signer, *args: Any, **kwargs: Any) -> str:
        token = original(self, *args, **kwargs)
        guard.add(token, token.rsplit(".", 1)[-1])
        return token

    monkeypatch.setattr(Signer, "sign", recording_sign)
    with LogSecretsGuard() as guard:
        guard.add(*SESSION_SECRETS)
        yield guard
    guard.check()


@pytest.fixture
def jwks_server() -> Iterator[Callable[..., JwksServer]]:
    """Starts ``JwksServer`` instances on ephemeral ports; shuts them down after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(jwks: dict[str, Any], now: Callable[[], float], **kwargs: Any) -> JwksServer:
        state = JwksServer(jwks=jwks, now=now, **kwargs)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/.well-known/jwks.json":
                    self._send(200, state.jwks)
                    return
                auth = self.headers.get("Authorization", "")
                scheme, _, token = auth.partition(" ")
                try:
                    if scheme != "Bearer" or not token:
                        raise pyjwt.InvalidTokenError("no bearer token")
                    state.seen_tokens.append(token)
                    claims = state.verify(token)
                except pyjwt.InvalidTokenError as exc:
                    state.rejected.append(type(exc).__name__)
                    self._send(401, {"error": "invalid_token"},
                               {"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
                    return
                state.accepted.append(claims)
                self._send(200, {"sub": claims["sub"]})

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
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
