"""Hooks for OpenTelemetry's httpx instrumentation (``opentelemetry-instrumentation-httpx``),
and ``token_request`` for provider plugins that call a token endpoint (docs/observability.md).

A request that asapp-auth sends again after a 401 (with a refreshed context, or after a login)
is the same request sent once more: the HTTP semantic conventions want its client span to carry
``http.request.resend_count``. That instrumentation reads no resend count of its own; it hands
its request hooks the request's extensions, where asapp-auth keeps the count for httpx and httpx2
requests. Pass these hooks to it::

    HTTPXClientInstrumentor().instrument(
        request_hook=asapp_auth.otel.request_hook,
        async_request_hook=asapp_auth.otel.async_request_hook,
    )
"""

from __future__ import annotations

from typing import Any

from ._telemetry import RESEND_COUNT, RESEND_EXTENSION, token_request

__all__ = ["async_request_hook", "request_hook", "token_request"]


def request_hook(span: Any, request: Any) -> None:
    """Set ``http.request.resend_count`` on ``span`` when ``request`` is a resend."""
    extensions = getattr(request, "extensions", None) or {}
    count = extensions.get(RESEND_EXTENSION)
    if count and span.is_recording():
        span.set_attribute(RESEND_COUNT, count)


async def async_request_hook(span: Any, request: Any) -> None:
    """``request_hook`` for async clients."""
    request_hook(span, request)
