"""How a context goes onto an outgoing request, and comes off it again before a retry.

An ``Attacher`` turns a context into a ready-to-send form once (``prepare``, cached with the
context), puts it on a request (``attach``), and takes it off (``detach``) so that a retried
request carries only the new context. Three are provided:

- ``MapContext`` (the default): ``Auth.Token`` as ``Authorization: Bearer``, ``Auth.Headers`` as
  headers, ``Auth.Cookies`` added to the ``Cookie`` header, ``Auth.Body`` merged into a JSON object
  body already in memory (a streamed or non-JSON body is left alone, never read).
- ``ContextHeader``: the whole context as compact JSON in one header.
- ``CallableAttacher``: the app's own ``function(request, context)``; what it changes is undone
  from a snapshot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._wire import access_for
from .context import AuthContext
from .errors import ConfigurationError

__all__ = [
    "Attacher",
    "Attachment",
    "CallableAttacher",
    "ContextHeader",
    "MapContext",
    "as_attacher",
    "attached_bytes",
]

log = logging.getLogger("asapp_auth")


@dataclass(slots=True, eq=False)
class Attachment:
    """What an attacher put on one request: enough to take it off, and to guard redirects.

    Its values are secrets: none of them is in its repr.
    """

    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    cookies: tuple[str, ...] = field(default=(), repr=False)
    cookie_before: str | None = field(default=None, repr=False)
    body_before: bytes | None = field(default=None, repr=False)
    # True when part of the context went into the body.
    in_body: bool = False
    # For attachers that change the request in unknown ways: its state before (``BodyAccess``).
    snapshot: object = field(default=None, repr=False)
    # True when only an Authorization header was set: httpx drops it on cross-origin redirects.
    authorization_only: bool = False
    # The redirect guard's encoded form of the above, and guards kept for reuse (origins.py).
    guard_data: Any = field(default=None, repr=False)
    # The request_proof headers among ``headers``, made again for each redirect hop (_proofs).
    proof: Any = field(default=None, repr=False)


class Attacher(Protocol):
    def prepare(self, context: AuthContext) -> object:
        """The context in a form ``attach`` can apply quickly; made once per cached context."""

    def attach(self, request: Any, prepared: Any) -> Attachment:
        """Put the prepared context on ``request``."""

    def detach(self, request: Any, attachment: Attachment) -> None:
        """Take off what ``attach`` put on ``request``."""


@dataclass(frozen=True, slots=True)
class _Mapped:
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    cookies: tuple[str, ...] = field(repr=False)
    body: dict[str, Any] | None = field(repr=False)
    # Headers-only contexts need nothing per request to be undone: one shared record serves.
    shared: Attachment | None

    @property
    def credential(self) -> bool:
        """True when something goes on a request: a header or cookie with a value, body fields."""
        headers = any(value for _, value in self.headers)
        return headers or any(not c.endswith("=") for c in self.cookies) or bool(self.body)


class MapContext:
    """Map the platform's context schema onto headers, cookies and a JSON body (the default)."""

    def prepare(self, context: AuthContext) -> _Mapped:
        auth = context.get("Auth") or {}
        headers: list[tuple[str, str]] = []
        if auth.get("Token"):
            headers.append(("Authorization", f"Bearer {auth['Token']}"))
        headers.extend((auth.get("Headers") or {}).items())
        cookies = tuple(f"{name}={value}" for name, value in (auth.get("Cookies") or {}).items())
        body = auth.get("Body")
        thawed = None if body is None else context.to_dict()["Auth"]["Body"]
        shared = None
        if not cookies and thawed is None:
            only = all(name.lower() == "authorization" for name, _ in headers)
            shared = Attachment(headers=tuple(headers), authorization_only=only)
        return _Mapped(tuple(headers), cookies, thawed, shared)

    def attach(self, request: Any, prepared: _Mapped) -> Attachment:
        for name, value in prepared.headers:
            request.headers[name] = value
        if prepared.shared is not None:
            return prepared.shared
        attachment = Attachment(headers=prepared.headers)
        if prepared.cookies:
            before = request.headers.get("Cookie")
            ours = "; ".join(prepared.cookies)
            request.headers["Cookie"] = f"{before}; {ours}" if before else ours
            attachment.cookies = prepared.cookies
            attachment.cookie_before = before
        if prepared.body is not None:
            self._merge_body(request, prepared.body, attachment)
        return attachment

    @staticmethod
    def _merge_body(request: Any, body: dict[str, Any], attachment: Attachment) -> None:
        # Only a JSON body already in memory is merged: a stream is never read for this.
        access = access_for(request)
        original = access.json_body(request)
        if original is None:
            return
        try:
            document = json.loads(original) if original else None
        except ValueError:
            document = None
        if not isinstance(document, dict):
            log.debug("request body is not a JSON object; Auth.Body not merged into it")
            return
        attachment.body_before = original
        attachment.in_body = True
        access.set_body(request, json.dumps({**document, **body}, separators=(",", ":")).encode())

    def detach(self, request: Any, attachment: Attachment) -> None:
        for name, _ in attachment.headers:
            request.headers.pop(name, None)
        if attachment.cookies:
            if attachment.cookie_before is None:
                request.headers.pop("Cookie", None)
            else:
                request.headers["Cookie"] = attachment.cookie_before
        if attachment.body_before is not None:
            access_for(request).set_body(request, attachment.body_before)


class ContextHeader:
    """Send the whole context as compact JSON in one header (``X-Asapp-Context`` by default)."""

    def __init__(self, name: str = "X-Asapp-Context") -> None:
        self.name = name

    def prepare(self, context: AuthContext) -> tuple[tuple[str, str], ...]:
        value = json.dumps(context.to_dict(), separators=(",", ":"), ensure_ascii=True)
        return ((self.name, value),)

    def attach(self, request: Any, prepared: tuple[tuple[str, str], ...]) -> Attachment:
        for name, value in prepared:
            request.headers[name] = value
        return Attachment(headers=prepared)

    def detach(self, request: Any, attachment: Attachment) -> None:
        for name, _ in attachment.headers:
            request.headers.pop(name, None)

    def __repr__(self) -> str:
        return f"ContextHeader({self.name!r})"


class CallableAttacher:
    """Let ``function(request, context)`` attach the context however the platform wants it."""

    def __init__(self, function: Callable[[Any, AuthContext], None]) -> None:
        self.function = function

    def prepare(self, context: AuthContext) -> AuthContext:
        return context

    def attach(self, request: Any, prepared: AuthContext) -> Attachment:
        access = access_for(request)
        before = access.snapshot(request)
        headers = _items(request.headers)
        self.function(request, prepared)
        added = tuple(item for item in _items(request.headers) if item not in headers)
        return Attachment(
            headers=added, in_body=access.body_changed(request, before), snapshot=before
        )

    def detach(self, request: Any, attachment: Attachment) -> None:
        assert attachment.snapshot is not None
        access_for(request).restore(request, attachment.snapshot)


def _items(headers: Any) -> list[tuple[str, str]]:
    # httpx.Headers lists repeated names once each through multi_items(); the others, items().
    multi = getattr(headers, "multi_items", None)
    return list(multi() if multi is not None else headers.items())


def _header_bytes(headers: tuple[tuple[str, str], ...]) -> int:
    # Each as sent: "Name: value" and its line end.
    return sum(len(name.encode()) + len(value.encode()) + 4 for name, value in headers)


def attached_bytes(prepared: object) -> int | None:
    """Bytes ``MapContext`` or ``ContextHeader`` puts on each request from ``prepared``;
    ``None`` for another attacher's, which only it knows."""
    if isinstance(prepared, _Mapped):
        size = _header_bytes(prepared.headers)
        if prepared.cookies:
            size += len("Cookie: \r\n") + len("; ".join(prepared.cookies).encode())
        if prepared.body is not None:
            size += len(json.dumps(prepared.body, separators=(",", ":")).encode())
        return size
    if isinstance(prepared, tuple) and all(
        isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)
        for item in prepared
    ):
        return _header_bytes(prepared)
    return None


def as_attacher(value: object) -> Attacher:
    """Accept an ``Attacher``, a plain ``function(request, context)``, or ``None`` (default)."""
    if value is None:
        return MapContext()
    if all(hasattr(value, name) for name in ("prepare", "attach", "detach")):
        return value  # type: ignore[return-value]
    if callable(value):
        return CallableAttacher(value)
    raise ConfigurationError(
        f"attach must be an Attacher or a function (request, context), not {type(value).__name__}"
    )
