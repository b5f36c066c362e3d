"""The wire for httpx and for httpx2, its maintained continuation: the two share one API.

httpx follows redirects before an auth flow sees the response, so a context attached to a
request is kept off other origins by the redirect guard of ``origins.py``, installed through the
``trace`` extension that both clients' HTTP transports call before each hop's headers go out.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._wire import Wire, is_json, register_access, target_keys
from .origins import AsyncRedirectGuard, Origin, RedirectGuard, install_guard, origin_of

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
        # httpx's URL gives the host as ASCII bytes and no port for the scheme's default.
        self._targets = {
            (scheme, host.encode("ascii"), port) for scheme, host, port in target_keys(self.origins)
        }

    def is_target(self, request: Any) -> bool:
        url = request.url
        return (url.scheme, url.raw_host, url.port) in self._targets

    def origin(self, request: Any) -> Origin:
        return origin_of(request.url)

    def guard(self, request: Any, attachment: Any) -> None:
        # httpx drops Authorization itself on a hop to another origin; anything else needs us.
        if not attachment.authorization_only or request.url.scheme != "https":
            install_guard(request, self.origins, attachment, self._guard_type)

    def answered_elsewhere(self, request: Any, response: Any) -> bool:
        last = response.request
        return last is not request and not self.is_target(last)

    def replayable(self, request: Any) -> bool:
        return isinstance(request.stream, self._module.ByteStream)

    def challenges(self, response: Any) -> list[str]:
        return list(response.headers.get_list("www-authenticate"))

    def read_body(self, response: Any) -> object:
        return response.read()

    async def aread_body(self, response: Any) -> object:
        return await response.aread()


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
