"""Which origins may receive a context, and the guard that keeps redirects from carrying it.

httpx follows redirects before an ``httpx.Auth`` flow sees the response. On a hop to another
origin it drops ``Authorization`` (but keeps it on an http-to-https upgrade of the same host),
rebuilds ``Cookie`` from the client's jar, and copies every other header, and on a 307/308 the
body, unchanged. So the pipeline installs a guard on each request it attaches a context to, through
the documented ``trace`` request extension, which httpx copies to every hop and its HTTP transports
call just before a hop's headers are written. On a hop to an origin that is not configured the
guard removes every header and cookie the pipeline attached, and refuses a hop that would carry a
context merged into the body (``RedirectBlockedError``). Transports that do not call ``trace``
(mock, WSGI, ASGI) get httpx's own behaviour; see the security notes in the docs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx

from . import _telemetry
from .errors import ConfigurationError, RedirectBlockedError

if TYPE_CHECKING:
    from ._proofs import Proof
    from .attach import Attachment

__all__ = ["Origin", "format_origin", "origin_of", "parse_origins"]

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEADERS_EVENT = "send_request_headers.started"

log = logging.getLogger("asapp_auth")


def origin_of(url: httpx.URL) -> Origin:
    """The (scheme, host, port) origin of ``url``, with the scheme's default port filled in.

    The host is the ASCII form (IDNA, lowercase), as it goes on the wire.
    """
    scheme = url.scheme
    return (scheme, url.raw_host.decode("ascii").lower(), url.port or _DEFAULT_PORTS.get(scheme, 0))


def format_origin(origin: Origin) -> str:
    """``scheme://host[:port]``, the port shown only when it is not the scheme's default."""
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return (
        f"{scheme}://{shown}"
        if _DEFAULT_PORTS.get(scheme) == port
        else f"{scheme}://{shown}:{port}"
    )


def htu_of(url: str) -> str:
    """``url`` without query or fragment (a DPoP proof's ``htu``)."""
    end = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    return url[:end]


def parse_origins(values: Iterable[str]) -> frozenset[Origin]:
    """Validate origins such as ``https://api.chat.example`` or ``http://127.0.0.1:8080``."""
    if isinstance(values, str):
        raise ConfigurationError(
            f"origins must be a list of origins, not a single str; write origins=[{values!r}]"
        )
    found = set()
    for value in values:
        if not isinstance(value, str):
            raise ConfigurationError(f"an origin must be a str, not {type(value).__name__}")
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ConfigurationError(f"origin {value!r} is not a valid URL: {exc}") from None
        if url.scheme not in _DEFAULT_PORTS or not url.host:
            raise ConfigurationError(
                f"origin {value!r} must be an http:// or https:// URL with a host"
            )
        if url.path not in ("", "/") or url.query or url.fragment or url.userinfo:
            raise ConfigurationError(
                f"origin {value!r} must be scheme://host[:port] only, without path, query, "
                "fragment or credentials"
            )
        found.add(origin_of(url))
    return frozenset(found)


def _hop_origin(request: Any) -> Origin:
    url = request.url  # an httpcore.URL
    target = bytes(url.target)
    if target.startswith((b"http://", b"https://")):  # absolute form, through a forward proxy
        return origin_of(httpx.URL(target.decode("ascii")))
    scheme = bytes(url.scheme).decode("ascii")
    port = url.port or _DEFAULT_PORTS.get(scheme, 0)
    return (scheme, bytes(url.host).decode("ascii").lower(), port)


class _Guard:
    __slots__ = ("_allowed", "_cookies", "_headers", "_in_body", "_inner", "_proof", "_sent")

    def __init__(
        self,
        allowed: frozenset[Origin],
        attachment: Attachment,
        inner: Callable[[str, dict[str, Any]], Any] | None,
    ) -> None:
        self._allowed = allowed
        self._headers, self._cookies = _encoded(attachment)
        self._in_body = attachment.in_body
        self._inner = inner
        self._proof: Proof | None = attachment.proof
        # Set by the first send, the request the proof was made for: every send after it is a hop.
        self._sent = False

    def _check(self, event: str, info: dict[str, Any]) -> None:
        if not event.endswith(_HEADERS_EVENT) or "request" not in info:
            return
        request = info["request"]
        if bytes(request.method) == b"CONNECT":
            return  # a tunnel through a proxy; the request inside it is checked on its own
        headers = request.headers
        origin = _hop_origin(request)
        if origin in self._allowed:
            if self._proof is not None:
                self._prove(request)
            if self._cookies:
                # httpx rebuilds Cookie from its jar on every hop: put ours back.
                _restore_cookies(headers, self._cookies)
            return
        if self._in_body and _has_body(headers):
            _telemetry.count("redirect.strips", {_telemetry.OUTCOME: "blocked"})
            raise RedirectBlockedError(
                f"a redirect to {format_origin(origin)}, an origin not configured for this "
                "pipeline, would carry the context merged into the request body; the request "
                "was stopped. Add the origin to origins= if it is trusted, or disable redirects"
            )
        kept = []
        for name, value in headers:
            lowered = bytes(name).lower()
            if (lowered, bytes(value)) in self._headers:
                continue
            if lowered == b"cookie" and self._cookies:
                pairs = [p for p in bytes(value).split(b"; ") if p not in self._cookies]
                if pairs:
                    kept.append((name, b"; ".join(pairs)))
                continue
            kept.append((name, value))
        if kept != list(headers):
            headers[:] = kept
            _telemetry.count("redirect.strips", {_telemetry.OUTCOME: "removed"})
            log.info("context removed from a redirect to %s", format_origin(origin))

    def _prove(self, request: Any) -> None:
        """On a hop within the origins, replace the proof the hop carries with one made for it:
        httpx copies the first request's headers to every hop."""
        if not self._sent:
            self._sent = True
            return
        proof = self._proof
        assert proof is not None
        headers = request.headers
        carried = frozenset((n.lower().encode(), v.encode()) for n, v in proof.headers)
        if not any((bytes(n).lower(), bytes(v)) in carried for n, v in headers):
            return  # taken off with the context (a retry as nobody): nothing to prove
        fresh = proof.for_hop(bytes(request.method).decode("ascii"), _hop_htu(request))
        names = {name.encode() for name in proof.names()}
        headers[:] = [(n, v) for n, v in headers if bytes(n).lower() not in names]
        headers.extend((name.encode(), value.encode()) for name, value in fresh)


def _hop_htu(request: Any) -> str:
    """The hop's URL without query or fragment, as ``str(httpx.URL)`` writes it."""
    url = request.url  # an httpcore.URL
    target = bytes(url.target).decode("ascii")
    if target.startswith(("http://", "https://")):  # absolute form, through a forward proxy
        return htu_of(target)
    host = bytes(url.host).decode("ascii")
    shown = f"[{host}]" if ":" in host else host
    port = "" if url.port is None else f":{url.port}"
    return htu_of(f"{bytes(url.scheme).decode('ascii')}://{shown}{port}{target}")


def _encoded(attachment: Attachment) -> tuple[frozenset[tuple[bytes, bytes]], frozenset[bytes]]:
    """The attachment's headers and cookies as bytes, computed once per attachment."""
    if attachment.guard_data is None:
        headers = frozenset((n.lower().encode(), v.encode()) for n, v in attachment.headers)
        attachment.guard_data = (headers, frozenset(c.encode() for c in attachment.cookies), {})
    return attachment.guard_data[0], attachment.guard_data[1]


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    # httpx drops both headers when a redirect turns the request into a body-less GET.
    for name, value in headers:
        lowered = bytes(name).lower()
        if lowered == b"transfer-encoding" or (
            lowered == b"content-length" and bytes(value).strip() != b"0"
        ):
            return True
    return False


def _restore_cookies(headers: list[tuple[bytes, bytes]], ours: frozenset[bytes]) -> None:
    for index, (name, value) in enumerate(headers):
        if bytes(name).lower() == b"cookie":
            present = set(bytes(value).split(b"; "))
            missing = [c for c in sorted(ours) if c not in present]
            if missing:
                headers[index] = (name, b"; ".join([bytes(value), *missing]))
            return
    headers.append((b"Cookie", b"; ".join(sorted(ours))))


class RedirectGuard(_Guard):
    """``trace`` extension for sync transports."""

    __slots__ = ()

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        self._check(event, info)
        if self._inner is not None:
            self._inner(event, info)


class AsyncRedirectGuard(_Guard):
    """``trace`` extension for async transports."""

    __slots__ = ()

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        self._check(event, info)
        if self._inner is not None:
            result = self._inner(event, info)
            if isinstance(result, Awaitable):
                await result


def install_guard(
    request: httpx.Request,
    allowed: frozenset[Origin],
    attachment: Attachment,
    guard: type[RedirectGuard] | type[AsyncRedirectGuard],
) -> None:
    """Put a redirect guard for ``attachment`` on ``request``, keeping any trace already there."""
    inner = request.extensions.get("trace")
    if isinstance(inner, _Guard):
        inner = inner._inner
    if inner is None:
        # Nothing to chain to: one guard per attachment serves every request that shares it.
        _encoded(attachment)
        kept = attachment.guard_data[2]
        instance = kept.get(guard)
        if instance is None:
            instance = kept[guard] = guard(allowed, attachment, None)
    else:
        instance = guard(allowed, attachment, inner)
    # A new dict: the caller's own extensions mapping may be shared between requests.
    request.extensions = {**request.extensions, "trace": instance}


def remove_guard(request: httpx.Request) -> None:
    """Take ``install_guard``'s guard off ``request``, keeping the trace it chained to."""
    guard = request.extensions.get("trace")
    if isinstance(guard, _Guard):
        extensions = {k: v for k, v in request.extensions.items() if k != "trace"}
        if guard._inner is not None:
            extensions["trace"] = guard._inner
        request.extensions = extensions
