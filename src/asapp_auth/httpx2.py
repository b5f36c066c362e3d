"""asapp-auth for httpx2: ``httpx2.Client(auth=Httpx2Auth(pipeline))``, sync and async.

``pip install 'asapp-auth[httpx2]'``. httpx2 is the maintained continuation of httpx, with the
same auth-flow and ``trace`` interfaces, so it shares httpx's wire and redirect guard
(``_httpx_wire``); only the classes differ.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx2

from . import _flow
from ._httpx_wire import HttpxWire, register_httpx_module
from .origins import AsyncRedirectGuard, RedirectGuard
from .pipeline import AuthPipeline, CustomerAuth, adapter_target

__all__ = ["Httpx2Auth"]

register_httpx_module(httpx2)


class Httpx2Auth(httpx2.Auth):
    """An ``httpx2.Auth`` for an ``AuthPipeline``, or for one fixed customer of it
    (``Httpx2Auth(pipeline.for_customer(id))``)."""

    requires_request_body = False
    requires_response_body = False

    def __init__(self, auth: AuthPipeline | CustomerAuth) -> None:
        self.pipeline, self._bound = adapter_target(auth, "Httpx2Auth")
        self._sync = HttpxWire(self.pipeline, httpx2, RedirectGuard, "httpx2")
        self._async = HttpxWire(self.pipeline, httpx2, AsyncRedirectGuard, "httpx2")

    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        return _flow.auth_flow_sync(self._sync, request, self._bound)

    def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        return _flow.auth_flow_async(self._async, request, self._bound)

    def __repr__(self) -> str:
        return f"Httpx2Auth({self.pipeline!r})"
