"""What log records say about customers: one line per refresh, and ids only when asked for."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from typing import Any

import httpx
import pytest

from asapp_auth import AuthContext, AuthPipeline, hookimpl
from asapp_auth.errors import LoginRequiredError
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RedisServer

PATIENCE = 10
EMAIL = "alice@example.com"
DIGEST = "#" + hashlib.sha256(EMAIL.encode()).hexdigest()[:12]


def _refreshing(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "was rejected; refreshing" in r.getMessage()]


def test_twenty_requests_rejected_together_log_one_refresh(
    platform: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    """20 requests refused with one context share one refresh, and one INFO line says so."""
    caplog.set_level(logging.INFO, "asapp_auth")
    everyone = threading.Event()

    def provider(needs_refresh: bool) -> dict[str, Any]:
        if needs_refresh:
            assert everyone.wait(PATIENCE)
        return {"Auth": {"Token": platform.issue_token("alice")}}

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", provider)
    claim = pipeline._claim
    joined: list[int] = []
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def claim_and_count(*args: Any, **kwargs: Any) -> Any:
        flight, leader, current = claim(*args, **kwargs)
        if flight is not None and not leader:
            joined.append(1)
            if len(joined) == 19:  # every other request waits on the first one's refresh
                loop, all_joined = waiters[0]
                loop.call_soon_threadsafe(all_joined.set)
        return flight, leader, current

    pipeline._claim = claim_and_count  # type: ignore[method-assign]
    url = f"{platform.url}/v1/account"

    async def main() -> list[int]:
        all_joined = asyncio.Event()
        waiters.append((asyncio.get_running_loop(), all_joined))
        async with httpx.AsyncClient(auth=pipeline) as client:
            await client.get(url)
            platform.expire()
            tasks = [asyncio.ensure_future(client.get(url)) for _ in range(20)]
            async with asyncio.timeout(PATIENCE):
                await all_joined.wait()
            everyone.set()
            return [r.status_code for r in await asyncio.gather(*tasks)]

    assert asyncio.run(main()) == [200] * 20
    assert len(_refreshing(caplog)) == 1


class DeclinesLogin:
    """A login handler that declines, so a gone session ends in LoginRequiredError."""

    @hookimpl
    def on_login_required(self) -> bool:
        return False


def _customer_records(platform: FakePlatform, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages of the INFO-and-above records a customer's life logs: set, refused,
    refreshed, session gone, set again, cleared."""
    caplog.set_level(logging.INFO, "asapp_auth")
    gone = [False]

    def provider(needs_refresh: bool) -> dict[str, Any]:
        if gone[0]:
            raise LoginRequiredError("the session ended")
        return {"Auth": {"Token": platform.issue_token(EMAIL)}}

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.register(DeclinesLogin())
    pipeline.load(EMAIL, provider)
    url = f"{platform.url}/v1/account"
    with httpx.Client(auth=pipeline) as client:
        client.get(url)
        platform.expire()
        client.get(url)  # refused, refreshed
        platform.expire()
        gone[0] = True
        with pytest.raises(LoginRequiredError):
            client.get(url)  # refused, and the session is gone
    gone[0] = False
    pipeline.set_customer(EMAIL, provider)
    pipeline.clear()
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def test_records_name_a_customer_by_a_digest_of_its_id(
    platform: FakePlatform, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default no INFO-or-above record holds the customer id; its digest stands for it."""
    monkeypatch.delenv("ASAPP_AUTH_LOG_CUSTOMER_IDS", raising=False)
    messages = [m for m in _customer_records(platform, caplog) if "customer" in m]
    assert not [m for m in messages if EMAIL in m]
    named = [m for m in messages if DIGEST in m]
    # set, refused (twice), session gone, set again, cleared
    assert len(named) >= 6, messages


def test_asapp_auth_log_customer_ids_shows_the_ids(
    platform: FakePlatform, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ASAPP_AUTH_LOG_CUSTOMER_IDS=1 puts the ids themselves in the records."""
    monkeypatch.setenv("ASAPP_AUTH_LOG_CUSTOMER_IDS", "1")
    messages = [m for m in _customer_records(platform, caplog) if "customer" in m]
    assert len([m for m in messages if repr(EMAIL) in m]) >= 6, messages
    assert not [m for m in messages if DIGEST in m]


class Shared:
    """A provider whose contexts a shared cache may share."""

    cache_scope = "log-test"

    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform

    def __call__(self, needs_refresh: bool) -> AuthContext:
        return self.platform.context_for(EMAIL, 300)


def test_the_shared_cache_names_a_customer_by_its_digest(
    platform: FakePlatform, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The shared cache's warning about an unreadable entry names the customer's digest only."""
    caplog.set_level(logging.WARNING, "asapp_auth")
    namespace = f"logs-{id(caplog)}"
    writer = AuthPipeline(
        [platform.origin],
        cache=RedisContextCache(redis_server.url, keys=[generate_key()], namespace=namespace),
    )
    writer.load(EMAIL, Shared(platform))
    writer.get_context()
    reader = AuthPipeline(
        [platform.origin],
        cache=RedisContextCache(redis_server.url, keys=[generate_key()], namespace=namespace),
    )
    reader.load(EMAIL, Shared(platform))
    reader.get_context()  # Redis holds an entry sealed with a key this cache does not have
    unreadable = [r.getMessage() for r in caplog.records if "could not be used" in r.getMessage()]
    assert len(unreadable) == 1
    assert DIGEST in unreadable[0]
    assert EMAIL not in caplog.text
