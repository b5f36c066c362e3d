"""What every backend of ``asapp-auth demo`` shares: the platform it runs against, the
interface a backend follows, and small helpers."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .testing import FakePlatform

if TYPE_CHECKING:
    from .pipeline import AuthPipeline
    from .plugins import PluginInfo

__all__ = ["LIFETIME", "Backend", "Platform", "b64decode", "check", "write_secret"]

LIFETIME = 300  # seconds: every token the demo's servers issue


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only, replacing it in one step."""
    staging = path.with_name(f".{path.name}.new")
    handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(staging, path)  # a rotation is atomic for readers: old file or new, never half


class Platform(FakePlatform):
    """The fake platform, also accepting the tokens it did not issue that ``accept`` vouches
    for (the JWTs the company signs): ``accept(token)`` returns their customer, or ``None``."""

    accept: Callable[[str], str | None] | None = None

    def customer_of(self, token: str | None) -> str | None:
        customer = super().customer_of(token)
        if customer is None and token is not None and self.accept is not None:
            return self.accept(token)
        return customer


class Backend:
    """Who serves the customers' contexts, set up against the demo's platform.

    ``login`` is the app's side of a login: it makes whatever the provider needs for the
    customer, then sets it. ``expire`` makes the platform refuse the tokens it was given.
    """

    plugin: str | None = None
    serves: tuple[str, ...] | None = None  # the customers it answers for; None: everyone
    logs_in = False  # True: the plugin logs customers in itself (its on_login_required)

    def __init__(self, platform: Platform, workdir: Path) -> None:
        self.platform = platform
        self.workdir = workdir

    def describe(self, info: PluginInfo | None) -> str:
        assert info is not None
        return f"plugin {info.name!r} ({info.distribution} {info.version})"

    def settings(self) -> dict[str, Any]:
        return {}

    def started(self, pipeline: AuthPipeline) -> None:
        """Called once the pipeline is configured with the plugin."""

    def login(self, pipeline: AuthPipeline, customer_id: str) -> None:
        pipeline.set_customer(customer_id)

    def expire(self) -> str:
        """Make the platform refuse the tokens it has; say what happened, as a noun phrase."""
        self.platform.expire()
        return "an expired token"

    def login_story(self) -> str:
        """What the first login did, once it is done (checking it)."""
        return "401 -> on_login_required -> set_customer('alice') -> HTTP 200 as alice"

    def switch_story(self) -> str:
        return "set_customer('bob') -> the next request is bob's"

    def close(self, pipeline: AuthPipeline) -> None:
        """Release what the backend holds."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
