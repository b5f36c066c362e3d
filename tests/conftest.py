"""Fixtures shared by the core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asapp_auth import AuthPipeline, get_plugin_manager
from asapp_auth.testing import FakePlatform, LogSecretsGuard

SECRET_WORDS = ("s3cr3t",)


@pytest.fixture(autouse=True)
def _no_secrets_in_logs() -> Iterator[LogSecretsGuard]:
    """Fail any test whose log records hold a token issued during it, or a value marked secret."""
    LogSecretsGuard.known.clear()
    with LogSecretsGuard() as guard:
        guard.add(*SECRET_WORDS)
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
