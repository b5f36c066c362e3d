"""``cache_scope``: how an app's own provider shares a shared cache, and the warning when it
cannot. Against a real redis-server."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from asapp_auth import AuthContext, AuthPipeline, CustomerAuth
from asapp_auth.errors import ConfigurationError
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RedisServer

KEY = generate_key()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    return f"scope{abs(hash(request.node.nodeid)) % 10**9}-{time.monotonic_ns()}"


class Fleet:
    """Makes pipelines that each have a cache of their own on one Redis namespace, as the
    processes of a fleet have."""

    def __init__(self, platform: FakePlatform, server: RedisServer, namespace: str) -> None:
        self.platform, self.server, self.namespace = platform, server, namespace
        self.caches: list[RedisContextCache] = []

    def __call__(self) -> AuthPipeline:
        cache = RedisContextCache(self.server.url, keys=[KEY], namespace=self.namespace)
        self.caches.append(cache)
        return AuthPipeline([self.platform.origin], cache=cache)

    def stored(self) -> list[bytes]:
        """The names of what the fleet stored in Redis."""
        return list(redis.Redis.from_url(self.server.url).keys(f"{self.namespace}:*"))


@pytest.fixture
def fleet(platform: FakePlatform, redis_server: RedisServer, namespace: str) -> Iterator[Fleet]:
    """A fleet on a namespace of its own; its caches are closed after the test."""
    made = Fleet(platform, redis_server, namespace)
    yield made
    for cache in made.caches:
        cache.close()


class Minter:
    """An app's own provider: a new platform token per call, each call counted."""

    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform
        self.calls = 0

    def __call__(self, customer_id: str, needs_refresh: bool) -> AuthContext:
        self.calls += 1
        return self.platform.context_for(customer_id)


def _serve(pipeline: AuthPipeline, how: str, provider: Minter, **scope: str) -> CustomerAuth | None:
    """Make alice the customer of ``pipeline`` in one of the three ways an app can."""
    if how == "load":
        pipeline.load("alice", provider, **scope)
    elif how == "set_customer":
        pipeline.set_customer("alice", provider, **scope)
    else:
        return pipeline.for_customer("alice", provider, **scope)
    return None


def _token(pipeline: AuthPipeline, auth: CustomerAuth | None) -> str | None:
    context = pipeline.get_context() if auth is None else auth.get_context()
    assert context is not None
    return context.token


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "cache_scope" in r.getMessage()
    ]


@pytest.mark.parametrize("how", ["load", "set_customer", "for_customer"])
def test_cache_scope_argument_shares_an_apps_own_provider_across_processes(
    platform: FakePlatform, fleet: Fleet, how: str
) -> None:
    """Two processes serving a customer with their own providers under one ``cache_scope``
    share its context through Redis: the second never asks its provider."""
    first, second = fleet(), fleet()
    mine, theirs = Minter(platform), Minter(platform)
    token = _token(first, _serve(first, how, mine, cache_scope="chat-tokens"))
    assert _token(second, _serve(second, how, theirs, cache_scope="chat-tokens")) == token
    assert (mine.calls, theirs.calls) == (1, 0)


def test_other_scopes_do_not_share(platform: FakePlatform, fleet: Fleet) -> None:
    """Providers under different scopes (two tenants) never share a context."""
    first, second = fleet(), fleet()
    first.load("alice", Minter(platform), cache_scope="tenant-a")
    second.load("alice", Minter(platform), cache_scope="tenant-b")
    assert _token(first, None) != _token(second, None)


def test_the_argument_wins_over_the_providers_attribute(
    platform: FakePlatform, fleet: Fleet
) -> None:
    """A provider's ``cache_scope`` attribute still shares; an explicit argument replaces it."""
    first, second, third = fleet(), fleet(), fleet()
    declared = Minter(platform)
    declared.cache_scope = "chat-tokens"  # type: ignore[attr-defined]
    first.load("alice", declared)
    second.load("alice", Minter(platform), cache_scope="chat-tokens")
    third.load("alice", declared, cache_scope="elsewhere")
    assert _token(first, None) == _token(second, None) != _token(third, None)


@pytest.mark.parametrize("how", ["load", "set_customer", "for_customer"])
def test_a_provider_without_scope_under_a_shared_cache_is_warned_about_once(
    platform: FakePlatform,
    fleet: Fleet,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """An app's own provider without ``cache_scope`` keeps its contexts out of a configured
    shared cache: one warning per pipeline says so and how to share them, naming no customer."""
    caplog.set_level(logging.WARNING, logger="asapp_auth")
    pipeline = fleet()
    auth = _serve(pipeline, how, Minter(platform))
    assert _token(pipeline, auth)
    for name in ("bob", "carol"):
        pipeline.for_customer(name, Minter(platform))
        pipeline.set_customer(name, Minter(platform))
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "declares no cache_scope" in warnings[0]
    assert "cache_scope=" in warnings[0]
    assert "alice" not in warnings[0]
    assert fleet.stored() == []
    fleet().load("alice", Minter(platform))  # another pipeline warns for itself
    assert len(_warnings(caplog)) == 2


def test_no_warning_with_a_scope_with_plugins_or_without_a_shared_cache(
    platform: FakePlatform, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """Scoped providers, customers served by plugins, and pipelines with their own in-process
    cache give no such warning."""
    caplog.set_level(logging.WARNING, logger="asapp_auth")
    fleet().load("alice", Minter(platform), cache_scope="chat-tokens")
    fleet().load("bob")
    AuthPipeline([platform.origin]).load("carol", Minter(platform))
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("scope", "provider", "message"),
    [
        ("", True, "cache_scope must be a non-empty str"),
        (3, True, "not int"),
        ("chat-tokens", False, "cache_scope is for an app's own context_provider"),
    ],
)
def test_a_bad_cache_scope_is_a_configuration_error(
    platform: FakePlatform, scope: object, provider: bool, message: str
) -> None:
    """A scope that is not a non-empty str, or one given without a provider, is refused."""
    pipeline = AuthPipeline([platform.origin])
    given = Minter(platform) if provider else None
    with pytest.raises(ConfigurationError, match=message):
        pipeline.set_customer("alice", given, cache_scope=scope)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a customer_id"):
        pipeline.load(cache_scope="chat-tokens")
