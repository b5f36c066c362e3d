"""OpenTelemetry: the plugin's token-endpoint calls are ``asapp_auth.token_request`` spans and
``asapp_auth.token_endpoint.duration`` points, parents of the HTTP client's own spans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asapp_auth_oauth2 import InvalidClientError
from authserver import AuthServer, Client
from conftest import SECRETS
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind, StatusCode

from asapp_auth import Customer
from asapp_auth.testing import TelemetryCapture


@pytest.fixture
def telemetry() -> Iterator[TelemetryCapture]:
    """Spans and metrics in memory; the httpx instrumentation on for the plugin's client."""
    with TelemetryCapture() as capture:
        HTTPXClientInstrumentor().instrument(tracer_provider=capture.tracer_provider)
        try:
            yield capture
        finally:
            HTTPXClientInstrumentor().uninstrument()
        assert capture.undocumented() == []
        leaked = [t for t in capture.texts() for s in SECRETS | {"alice"} if len(s) >= 5 and s in t]
        assert leaked == []


def _settings(auth: AuthServer, secret: str) -> dict[str, Any]:
    auth.add_client(
        Client(
            client_id="app",
            auth_method="client_secret_post",
            grant_types=("client_credentials",),
            secret="right-s3cret",
        )
    )
    SECRETS.update({"right-s3cret", secret})
    return {
        "token_endpoint": auth.token_url,
        "client_id": "app",
        "client_auth": "client_secret_post",
        "client_secret": secret,
    }


def test_a_token_request_is_a_span_over_the_client_span(
    telemetry: TelemetryCapture, make: Any, auth: AuthServer
) -> None:
    """A client-credentials token: one token_request span, the HTTP span its child, a duration."""
    plugin = make(**_settings(auth, "right-s3cret"))
    context = plugin.provide_context(Customer("alice"), False, None)
    SECRETS.add(context.token)
    (span,) = telemetry.spans("asapp_auth.token_request")
    assert span.kind is SpanKind.INTERNAL
    assert dict(span.attributes or {}) == {
        "asapp_auth.plugin": "oauth2",
        "asapp_auth.grant_type": "client_credentials",
        "asapp_auth.outcome": "ok",
    }
    (http,) = [s for s in telemetry.spans() if s.kind is SpanKind.CLIENT]
    assert http.parent is not None
    assert http.parent.span_id == span.context.span_id
    assert (
        telemetry.value(
            "asapp_auth.token_endpoint.duration", plugin="oauth2", grant_type="client_credentials"
        )
        == 1
    )


def test_a_refused_token_request_records_its_error_type_only(
    telemetry: TelemetryCapture, make: Any, auth: AuthServer
) -> None:
    """A wrong secret: the span fails with error.type InvalidClientError, no message or event."""
    plugin = make(**_settings(auth, "wrong-s3cret"))
    with pytest.raises(InvalidClientError):
        plugin.provide_context(Customer("alice"), False, None)
    (span,) = telemetry.spans("asapp_auth.token_request")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is None
    assert span.events == ()
    assert dict(span.attributes or {})["error.type"] == "InvalidClientError"
    assert (
        telemetry.value("asapp_auth.token_endpoint.duration", plugin="oauth2", outcome="error") == 1
    )
