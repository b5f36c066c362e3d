"""Fixtures shared by the core's tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis_helpers import Target

from asapp_auth import AuthPipeline, get_plugin_manager
from asapp_auth.testing import FakePlatform, LogSecretsGuard, TelemetryCapture

SECRET_WORDS = ("s3cr3t",)
# Customers the tests name without a platform token: never in telemetry either.
CUSTOMER_IDS = ("alice", "bob", "carol", "dave")


@pytest.fixture(autouse=True)
def telemetry() -> Iterator[TelemetryCapture]:
    """Every test records its spans and metrics in memory, for the secrets guard to scan."""
    with TelemetryCapture() as capture:
        yield capture
    assert capture.undocumented() == [], "recorded, but not in docs/observability.md"


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(telemetry: TelemetryCapture) -> Iterator[LogSecretsGuard]:
    """Fail any test whose log records hold a token issued during it, or a value marked secret,
    or whose telemetry holds one of those or a customer id."""
    LogSecretsGuard.known.clear()
    LogSecretsGuard.customers.clear()
    LogSecretsGuard.customers.update(CUSTOMER_IDS)
    with LogSecretsGuard() as guard:
        guard.add(*SECRET_WORDS)
        guard.watch(telemetry)
        yield guard
    guard.check()


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    """The fake chat platform, a real HTTP server on 127.0.0.1."""
    with FakePlatform() as fake:
        yield fake


@pytest.fixture
def elsewhere() -> Iterator[FakePlatform]:
    """A second server: another origin, which must never receive a context."""
    with FakePlatform() as fake:
        yield fake


@pytest.fixture
def pipeline(platform: FakePlatform) -> AuthPipeline:
    """A pipeline for the fake platform's origin, with a fresh plugin manager."""
    return AuthPipeline(origins=[platform.origin], plugin_manager=get_plugin_manager())


@pytest.fixture(params=["server", "cluster"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each shared-cache behaviour runs on one redis-server and on a 3-primary Redis Cluster."""
    if request.param == "cluster":
        return Target(request.getfixturevalue("redis_cluster").url, cluster=True)
    return Target(request.getfixturevalue("redis_server").url, cluster=False)


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A Redis namespace of the test's own."""
    return f"t{abs(hash(request.node.nodeid)) % 10**9}-{time.monotonic_ns()}"
