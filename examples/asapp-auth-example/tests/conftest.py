"""Fixtures: the chat platform, the company's session service beside it, and a log guard that
also watches for the service's API key."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from example_helpers import API_KEY, SessionService

from asapp_auth.testing import Exchange, FakePlatform, LogSecretsGuard


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(log_secrets_guard: LogSecretsGuard) -> None:
    """Every test fails if a log record holds an issued token or the API key."""
    log_secrets_guard.add(API_KEY)


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    """The chat platform: its ``/v1/`` paths need a token it issued."""
    with FakePlatform() as chat:
        yield chat


@pytest.fixture
def service(platform: FakePlatform) -> Iterator[SessionService]:
    """The session service on another 127.0.0.1 server, needing ``API_KEY`` as a bearer token."""
    with FakePlatform() as company:
        state = SessionService(url=f"{company.url}/platform-token")

        def answer(exchange: Exchange) -> None:
            if exchange.token != API_KEY:
                exchange.answer(401, {"error": "bad api key"})
                return
            body = json.loads(exchange.body)
            with state.lock:
                state.asked.append((body["customer"], body["fresh"]))
            if state.stalled.is_set():
                state.released.wait(30)
                exchange.answer(503, {"error": "stalled"})
            elif state.status != 200:
                exchange.answer(state.status, {"error": "unavailable"})
            elif body["customer"] not in state.sessions:
                exchange.answer(404, {"error": "no session"})
            else:
                token = platform.issue_token(body["customer"], 120)
                exchange.answer(200, {"token": token, "expires_in": 120})

        company.route("/platform-token", answer)
        try:
            yield state
        finally:
            state.released.set()
