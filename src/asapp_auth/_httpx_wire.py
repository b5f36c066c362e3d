"""The wire for httpx and for httpx2, its maintained continuation: the two share one API.

httpx follows redirects before an auth flow sees the response, so a context attached to a
request is kept off other origins by the redirect guard of ``origins.py``, installed through the
``trace`` extension that both clients' HTTP transports call before each hop's headers go out.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._telemetry import RESEND_EXTENSION
from ._wire import Wire, is_json, register_access, target_keys
from .origins import (
    AsyncRedirectGuard,
    Origin,
    RedirectGuard,
    install_guard,
    origin_of,
    remove_guard,
)

__all__ = ["HttpxWire", "register_httpx_module"]


class HttpxWire(Wire[Any, Any]):
    """``httpx.Request``/``httpx.Response``, or httpx2's; ``guard_type`` is the sync or async
    redirect guard, matching the client."""

    def __init__(
        self,
        pipeline: Any,
        module: ModuleType,
        guard_type: type[RedirectGuard] | type[AsyncRedirectGuard],
        name: str,
    ) -> None:
        super().__init__(pipeline)
        self.name = name  # type: ignore[misc]
        self._module = module
        self._guard_type = guard_type
        self._parsed = _keeps_parsed_parts(module)
        # The URL's ASCII host, and no port for the scheme's default, as httpx gives them.
        self._targets = target_keys(self.origins)
        # Where httpx itself would carry Authorization to another origin: from http://host on
        # port 80 it keeps it on an upgrade to https://host, which needs the guard unless that
        # origin is configured too. Everywhere else it drops Authorization on a hop elsewhere.
        self._upgrades = {
            key
            for scheme, host, port in self.origins
            if scheme == "http" and port == 80 and ("https", host, 443) not in self.origins
            for key in ((scheme, host, None), (scheme, host, 80))
        }

    def _key(self, request: Any) -> tuple[str, str, int | None]:
        url = request.url
        if self._parsed:
            parts = url._uri_reference
            return (parts.scheme, parts.host, parts.port)
        return (url.scheme, url.raw_host.decode("ascii"), url.port)

    def is_target(self, request: Any) -> bool:
        # _key inline: this runs on every request.
        url = request.url
        if self._parsed:
            parts = url._uri_reference
            return (parts.scheme, parts.host, parts.port) in self._targets
        return (url.scheme, url.raw_host.decode("ascii"), url.port) in self._targets

    def origin(self, request: Any) -> Origin:
        return origin_of(request.url)

    def guard(self, request: Any, attachment: Any) -> None:
        # httpx drops Authorization itself on a hop to another origin (see _upgrades): a
        # context that is only that needs no guard; anything else does.
        if not attachment.authorization_only or (
            self._upgrades and self._key(request) in self._upgrades
        ):
            install_guard(request, self.origins, attachment, self._guard_type)

    def detach(self, request: Any, attachment: Any) -> None:
        super().detach(request, attachment)
        # The guard goes with the attachment: left on a request resent as nobody, it would put
        # the old context's cookies back as the headers go out.
        remove_guard(request)

    def answered_elsewhere(self, request: Any, response: Any) -> bool:
        last = response.request
        return last is not request and not self.is_target(last)

    def replayable(self, request: Any) -> bool:
        return isinstance(request.stream, self._module.ByteStream)

    def resent(self, request: Any, count: int) -> None:
        # OpenTelemetry's httpx instrumentation hands its request and response hooks the
        # request's extensions, and reads no resend count itself: asapp_auth.otel's hooks do.
        request.extensions[RESEND_EXTENSION] = count

    def challenges(self, response: Any) -> list[str]:
        return list(response.headers.get_list("www-authenticate"))

    def read_body(self, response: Any) -> object:
        return response.read()

    async def aread_body(self, response: Any) -> object:
        return await response.aread()


def _keeps_parsed_parts(module: ModuleType) -> bool:
    """True when ``module.URL`` keeps its parsed parts in ``_uri_reference`` with the values its
    ``scheme``, ``raw_host`` and ``port`` properties give (httpx 0.28, httpx2): three attribute
    reads per request instead of three property calls, one of which encodes the host again."""
    try:
        for text in ("https://Example.COM:8443/p", "http://[::1]/", "https://xn--bcher-kva.de:443"):
            url = module.URL(text)
            parts = url._uri_reference
            if (parts.scheme, parts.host, parts.port) != (
                url.scheme,
                url.raw_host.decode("ascii"),
                url.port,
            ):
                return False
    except Exception:  # any other shape: the public properties serve
        return False
    return True


class _HttpxBody:
    """Body access for httpx-style requests: only a ``ByteStream`` is in memory."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def json_body(self, request: Any) -> bytes | None:
        if not isinstance(request.stream, self._module.ByteStream):
            return None
        if not is_json(request.headers.get("content-type")):
            return None
        return bytes(request.content)

    def set_body(self, request: Any, body: bytes) -> None:
        request.stream = self._module.ByteStream(body)
        # httpx keeps the bytes it has read beside the stream; keep the two in step.
        setattr(request, "_content", body)  # noqa: B010
        request.headers["Content-Length"] = str(len(body))

    def snapshot(self, request: Any) -> object:
        return (list(request.headers.multi_items()), request.stream)

    def body_changed(self, request: Any, snapshot: Any) -> bool:
        return request.stream is not snapshot[1]

    def restore(self, request: Any, snapshot: Any) -> None:
        headers, stream = snapshot
        request.headers = self._module.Headers(headers)
        if request.stream is not stream:
            request.stream = stream
            if isinstance(stream, self._module.ByteStream):
                setattr(request, "_content", b"".join(stream))  # noqa: B010


def register_httpx_module(module: ModuleType) -> None:
    """Let attachers change ``module.Request`` objects (httpx, or httpx2)."""
    register_access(module.Request, _HttpxBody(module))
