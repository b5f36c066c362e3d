"""Races between customer changes, refreshes and logins, found in review and kept fixed."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from asapp_auth import AuthContext, AuthPipeline, Customer, hookimpl
from asapp_auth.errors import ConfigurationError, LoginRequiredError
from asapp_auth.testing import FakePlatform


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
    platform: FakePlatform, name: str, calls: list[tuple[str, bool]], delay: float = 0
) -> Any:
    def provider(needs_refresh: bool) -> dict[str, Any]:
        calls.append((name, needs_refresh))
        if needs_refresh and delay:
            time.sleep(delay)
        return {"Auth": {"Token": platform.issue_token(name)}}

    return provider


def test_after_a_session_gone_login_the_request_goes_on_as_the_new_customer(
    platform: FakePlatform,
) -> None:
    """When a refresh finds the session gone, the retried request never carries the old context."""
    calls: list[tuple[str, bool]] = []

    def alice(needs_refresh: bool) -> dict[str, Any]:
        calls.append(("alice", needs_refresh))
        if needs_refresh:
            raise LoginRequiredError("refresh token revoked")
        # Still valid at the platform, but past the pipeline's own expiry.
        return AuthContext({"Auth": {"Token": platform.issue_token("alice")}}, expires_in=0.2)

    pipeline = AuthPipeline(origins=[platform.origin], expiry_margin=0.1, refresh_ahead=0)
    pipeline.register(SetsBob(pipeline, tokens(platform, "bob", calls)))
    pipeline.load("alice", alice)
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        time.sleep(0.2)
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "bob"}
    assert calls == [("alice", False), ("alice", True), ("bob", False)]


def test_a_rejected_request_retried_after_a_switch_goes_as_the_new_customer(
    platform: FakePlatform,
) -> None:
    """A switch during the refresh of a rejected request: the retry is the new customer's."""
    calls: list[tuple[str, bool]] = []
    alice = tokens(platform, "alice", calls, delay=0.3)
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", alice)
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        platform.expire()
        switch = threading.Timer(
            0.1, pipeline.set_customer, ("bob", tokens(platform, "bob", calls))
        )
        switch.start()
        answer = client.get(f"{platform.url}/v1/account").json()
        switch.join()
    assert answer == {"customer": "bob"}
    assert pipeline._cache.get(("alice", id(alice))) is None  # the orphaned refresh is not kept


def test_a_rejection_arriving_after_clear_asks_no_provider_and_caches_nothing() -> None:
    """A 401 that arrives after clear() calls no provider of the cleared customer."""
    calls: list[tuple[str, bool]] = []
    with FakePlatform(latency=0.3) as platform:
        pipeline = AuthPipeline(origins=[platform.origin], login_timeout=0)
        pipeline.load("alice", tokens(platform, "alice", calls))
        with httpx.Client(auth=pipeline) as client:
            client.get(f"{platform.url}/v1/account")
            platform.expire()
            clear = threading.Timer(0.1, pipeline.clear)
            clear.start()
            with pytest.raises(LoginRequiredError):
                client.get(f"{platform.url}/v1/account")
            clear.join()
    assert calls == [("alice", False)]
    assert len(pipeline._cache) == 0  # type: ignore[arg-type]


def test_a_hung_refresh_ahead_does_not_fail_the_first_request_after_expiry(
    platform: FakePlatform,
) -> None:
    """A refresh ahead that hung past provider_timeout is replaced, not joined, at expiry."""
    count = [0]

    def provider(needs_refresh: bool) -> AuthContext:
        count[0] += 1
        if count[0] == 2:
            time.sleep(2)  # the background refresh ahead hangs
        return AuthContext({"Auth": {"Token": platform.issue_token("alice")}}, expires_in=1.0)

    pipeline = AuthPipeline(origins=[platform.origin], provider_timeout=0.3)
    pipeline.load("alice", provider)
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        time.sleep(0.8)
        client.get(f"{platform.url}/v1/account")  # starts the refresh ahead, which hangs
        time.sleep(0.35)  # expired now, and the hung flight is past its deadline
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "alice"}
    assert count[0] == 3


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
    deadline = time.monotonic() + 2
    while not handler.cleared_in and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handler.cleared_in
    assert handler.cleared_in[0] != threading.main_thread().name


def test_a_failed_load_can_be_retried() -> None:
    """load() that raised counts for nothing: a corrected load() is accepted."""
    pipeline = AuthPipeline(origins=["https://api.chat.example"])
    with pytest.raises(ConfigurationError):
        pipeline.load("alice", 42)  # type: ignore[arg-type]
    assert pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": "t"}}) is not None
