"""Reading an endpoint's answer: the JSON object of a success, the typed exception of an error
(RFC 6749 section 5.2), and how long a ``Retry-After`` asks to wait. Nothing here quotes a body,
only an error's code and description, scrubbed of the request's secrets."""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Any

import httpx

from .errors import TokenResponseError, error_class

__all__ = ["error_answer", "json_object", "retry_after_seconds"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def json_object(
    *,
    body: bytes,
    headers: httpx.Headers,
    endpoint: str,
    status: int,
    what: str,
    customer_id: str | None,
) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or a ``TokenResponseError`` saying what came instead."""

    def fail(problem: str) -> TokenResponseError:
        return TokenResponseError(
            f"plugin 'oauth2': the {what} {endpoint} answered HTTP {status} with {problem}; "
            "check the endpoint URL and the server",
            endpoint=endpoint,
            status_code=status,
            customer_id=customer_id,
        )

    content_type = headers.get("content-type", "").lower()
    stripped = body.lstrip()
    if "html" in content_type or stripped[:1] == b"<":
        raise fail("an HTML page instead of JSON (a login page or a proxy's error page?)")
    if not stripped:
        raise fail("an empty body instead of JSON")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise fail(f"a body that is not valid JSON ({len(body)} bytes; truncated?)") from None
    if not isinstance(data, dict):
        raise fail(f"a JSON {type(data).__name__} instead of a JSON object")
    return data


def error_answer(
    *,
    body: bytes,
    headers: httpx.Headers,
    endpoint: str,
    status: int,
    what: str,
    secrets: list[str],
    customer_id: str | None,
) -> Exception:
    """The typed exception for an error answer: the RFC 6749 error's ``OAuth2Error`` (with
    ``secrets`` scrubbed from what is quoted), or a ``TokenResponseError``."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    code = data.get("error") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code:
        kind = "HTML" if body.lstrip()[:1] == b"<" else "a body without an OAuth2 error"
        return TokenResponseError(
            f"plugin 'oauth2': the {what} {endpoint} answered HTTP {status} with {kind}; "
            "check the endpoint URL and the client's registration",
            endpoint=endpoint,
            status_code=status,
            customer_id=customer_id,
        )
    code = _clean(code, secrets, 64)
    raw_description = data.get("error_description") if isinstance(data, dict) else None
    description = (
        _clean(raw_description, secrets, 300) if isinstance(raw_description, str) else None
    )
    cls = error_class(code)
    said = f" ({description})" if description else ""
    return cls(
        f"plugin 'oauth2': the {what} {endpoint} answered {code}{said}; "
        f"{_ADVICE.get(code, 'check the plugin settings against the server')}",
        error=code,
        error_description=description,
        endpoint=endpoint,
        status_code=status,
        customer_id=customer_id,
    )


_ADVICE = {
    "invalid_client": "check client_id and the client credentials (client_auth, client_secret, "
    "signing key or certificate)",
    "invalid_grant": "the grant (refresh token, assertion or subject token) was refused",
    "unauthorized_client": "allow this grant type for the client on the server, or change grant",
    "unsupported_grant_type": "the server does not offer this grant; change grant",
    "invalid_scope": "check scope against what the client may ask for",
    "invalid_request": "check the plugin settings (scope, audience, resource) against the server",
}


def _clean(text: str, secrets: list[str], limit: int) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())
