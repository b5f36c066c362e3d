"""asapp-auth for aiohttp: ``aiohttp.ClientSession(middlewares=(AiohttpAuth(pipeline),))``.

``pip install 'asapp-auth[aiohttp]'`` (aiohttp 3.12 or newer: client middlewares). aiohttp runs a
session's middlewares on every hop of a request, redirects included, each hop a new
``ClientRequest`` built from the caller's headers. So the middleware decides per hop, from that
hop's origin: a hop to a configured origin gets the context, any other hop gets nothing. What we
put on a hop's headers dies with it; a context merged into the body is taken off again before
the response goes back to aiohttp, which sends the same body object on a 307/308 hop.

A per-request ``middlewares=`` replaces the session's: include ``AiohttpAuth`` there too.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import payload
from yarl import URL

from . import _flow
from ._flow import fast as _fast
from ._wire import Wire, is_json, register_access, target_keys
from .classify import REFUSALS
from .origins import Origin
from .pipeline import AuthPipeline, CustomerAuth, adapter_target

__all__ = ["AiohttpAuth"]


# (scheme, netloc) pairs already judged, for the cached path: one dict lookup instead of three
# yarl properties, which parse the netloc again for every new URL. Bounded: cleared when full.
_NETLOCS_MAX = 1024


def _yarl_parts_usable() -> bool:
    """True when yarl's ``URL`` keeps its scheme and netloc (userinfo, host and port) as the
    plain strings ``_scheme`` and ``_netloc``, as yarl 1.12 and later do."""
    try:
        urls = [
            URL(text)
            for text in ("https://a.example:1/", "https://a.example:2/", "http://a.example:1/")
        ]
        pairs = {(url._scheme, url._netloc) for url in urls}
        return len(pairs) == 3 and all(isinstance(p, str) for pair in pairs for p in pair)
    except Exception:  # any other shape: the public properties serve
        return False


class _AiohttpWire(Wire[aiohttp.ClientRequest, aiohttp.ClientResponse]):
    name = "aiohttp"

    def __init__(self, pipeline: AuthPipeline) -> None:
        super().__init__(pipeline)
        self._keys = target_keys(self.origins)
        self._netlocs: dict[tuple[str, str], bool] | None = {} if _YARL_PARTS else None

    def is_target(self, request: aiohttp.ClientRequest) -> bool:
        url = request.url
        netlocs = self._netlocs
        if netlocs is None:
            return (url.scheme, url.raw_host, url.port) in self._keys
        key = (url._scheme, url._netloc)
        known = netlocs.get(key)
        if known is None:
            known = (url.scheme, url.raw_host, url.port) in self._keys
            if len(netlocs) >= _NETLOCS_MAX:
                netlocs.clear()
            netlocs[key] = known
        return known

    def origin(self, request: aiohttp.ClientRequest) -> Origin:
        url = request.url
        return (url.scheme, (url.raw_host or "").lower(), url.port or 0)

    def replayable(self, request: aiohttp.ClientRequest) -> bool:
        body = request._body
        return body is None or isinstance(body, payload.BytesPayload)

    def status(self, response: aiohttp.ClientResponse) -> int:
        return response.status

    def challenges(self, response: aiohttp.ClientResponse) -> list[str]:
        return list(response.headers.getall("WWW-Authenticate", ()))

    async def aread_body(self, response: aiohttp.ClientResponse) -> object:
        return await response.read()


class _AiohttpBody:
    def json_body(self, request: aiohttp.ClientRequest) -> bytes | None:
        body = request._body
        if not isinstance(body, payload.BytesPayload):
            return None
        if not is_json(request.headers.get("Content-Type")):
            return None
        return bytes(body._value)

    def set_body(self, request: aiohttp.ClientRequest, body: bytes | Any) -> None:
        # The synchronous form of update_body(): a BytesPayload holds no resource to close.
        request._update_body(body)

    def snapshot(self, request: aiohttp.ClientRequest) -> object:
        return (request.headers.copy(), request._body)

    def body_changed(self, request: aiohttp.ClientRequest, snapshot: Any) -> bool:
        return request._body is not snapshot[1]

    def restore(self, request: aiohttp.ClientRequest, snapshot: Any) -> None:
        headers, body = snapshot
        if request._body is not body:
            request._update_body(body)
        request.headers = headers.copy()


register_access(aiohttp.ClientRequest, _AiohttpBody())
_YARL_PARTS = _yarl_parts_usable()


class AiohttpAuth:
    """An aiohttp client middleware for an ``AuthPipeline``, or for one fixed customer of it
    (``AiohttpAuth(pipeline.for_customer(id))``)."""

    def __init__(self, auth: AuthPipeline | CustomerAuth) -> None:
        self.pipeline, self._bound = adapter_target(auth, "AiohttpAuth")
        self._wire = _AiohttpWire(self.pipeline)

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        pipeline, wire = self.pipeline, self._wire
        sent = _fast(wire, request, self._bound)
        if sent is None:
            return await handler(request)
        response = None
        if sent:
            response = await handler(request)
            if pipeline._default_rules and response.status not in REFUSALS:
                attachment = sent[3]
                if attachment is not None and attachment.in_body:  # _off_the_body, inline
                    pipeline._attacher.detach(request, attachment)
                return response
        steps = _flow.flow(wire, request, self._bound, sent or None, response)
        try:
            item = await _flow.advance_async(wire, steps, None)
            while not isinstance(item, _flow.Done):
                if response is not None:
                    response.release()  # the connection goes back to the pool
                response = await handler(item)
                item = await _flow.advance_async(wire, steps, response)
        finally:
            steps.close()
        _off_the_body(pipeline, request, item.state[3])
        assert response is not None
        return response

    def __repr__(self) -> str:
        return f"AiohttpAuth({self.pipeline!r})"


def _off_the_body(pipeline: AuthPipeline, request: aiohttp.ClientRequest, attachment: Any) -> None:
    # aiohttp sends this body object again on a 307/308 hop, wherever it goes: the hop's own
    # middleware call puts the context back if that hop is to a configured origin.
    if attachment is not None and attachment.in_body:
        pipeline._attacher.detach(request, attachment)
