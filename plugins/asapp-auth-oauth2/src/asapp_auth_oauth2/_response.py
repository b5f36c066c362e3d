"""Token responses (RFC 6749 section 5.1), validated before anything is cached."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asapp_auth.errors import ProviderError, type_with_article

from ._settings import OAuth2Settings
from ._transport import describe_endpoint
from .errors import TokenResponseError

__all__ = ["TokenResponse", "given_token", "parse_token_response", "token_dict"]


# RFC 6750 b64token, widened to any visible ASCII: what can travel in an Authorization header.
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A validated token response. ``repr`` never shows the tokens."""

    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    issued_token_type: str | None = None
    # "Bearer", or "DPoP" for a token bound to the client's DPoP key (RFC 9449 section 5).
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a password


def parse_token_response(
    data: Mapping[str, Any],
    settings: OAuth2Settings,
    *,
    endpoint: str,
    customer_id: str | None = None,
    given_to: str | None = None,
) -> TokenResponse:
    """Check ``data`` and return it as a ``TokenResponse``, or raise ``TokenResponseError``.

    ``given_to`` names the method an app gave ``data`` to (``"set_token()"``), for messages
    that blame the app's token rather than the server's answer.
    """

    def fail(problem: str) -> TokenResponseError:
        if given_to is not None:
            return TokenResponseError(
                f"plugin 'oauth2': the token given to {given_to} for customer {customer_id!r} "
                f"was refused: its {problem}; give the token response as the server sent it",
                endpoint=endpoint,
                customer_id=customer_id,
            )
        return TokenResponseError(
            f"plugin 'oauth2': the token endpoint {endpoint} answered a token response whose "
            f"{problem}; nothing was cached. Check the server (or the plugin's limits)",
            endpoint=endpoint,
            customer_id=customer_id,
        )

    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        what = "is missing" if token is None else f"is {type_with_article(token)}"
        if isinstance(token, str):
            what = "is empty"
        raise fail(f"access_token {what}; it must be a non-empty string")
    if not _HEADER_SAFE.match(token):
        raise fail("access_token holds spaces or characters that cannot be sent in a header")
    token_type = data.get("token_type")
    expected = "Bearer" if settings.dpop is None else "DPoP"
    if token_type is None:
        raise fail(f"token_type is missing; it must be {expected} (RFC 6749 section 5.1)")
    if not isinstance(token_type, str) or token_type.lower() != expected.lower():
        shown = (
            repr(token_type[:20]) if isinstance(token_type, str) else type_with_article(token_type)
        )
        why = (
            "this plugin sends Bearer tokens only without dpop = true"
            if settings.dpop is None
            else "with dpop = true the token must be bound to the client's DPoP key (RFC 9449 "
            "section 5); a server that issues Bearer tokens ignored the proof"
        )
        raise fail(f"token_type is {shown}, not {expected} ({why})")
    expires_in = _lifetime(data.get("expires_in"), settings, fail)
    refresh = data.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise fail(f"refresh_token is {type_with_article(refresh)}, not a non-empty string")
    scope = data.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise fail(f"scope is {type_with_article(scope)}, not a string")
    issued = data.get("issued_token_type")
    if issued is not None and not isinstance(issued, str):
        raise fail(f"issued_token_type is {type_with_article(issued)}, not a string")
    return TokenResponse(token, expires_in, refresh, scope, issued, expected)


def _lifetime(value: object, settings: OAuth2Settings, fail: Any) -> float:
    if value is None:
        return settings.default_expires_in
    # Some servers send the number as a string ("3599"); accept plain digits only.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"expires_in is {type_with_article(value)}, not a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise fail(f"expires_in is {value!r}; it must be a positive number of seconds")
    if value > settings.max_expires_in:
        raise fail(
            f"expires_in is {value!r} s, more than max_expires_in={settings.max_expires_in:g} s"
        )
    return float(value)


def token_dict(
    response: TokenResponse, *, expires_in: float, refresh_token: str | None
) -> dict[str, Any]:
    """``response`` as the whole token an app keeps (RFC 6749 section 5.1, plus ``expires_at``
    in seconds since the epoch, as authlib's ``OAuth2Token``): what ``set_token`` takes back."""
    token: dict[str, Any] = {
        "access_token": response.access_token,
        "token_type": response.token_type,
        "expires_in": max(1, int(expires_in)),
        "expires_at": int(time.time() + expires_in),
    }
    if refresh_token is not None:
        token["refresh_token"] = refresh_token
    if response.scope is not None:
        token["scope"] = response.scope
    if response.issued_token_type is not None:
        token["issued_token_type"] = response.issued_token_type
    return token


def given_token(
    customer_id: str, token: object, settings: OAuth2Settings
) -> tuple[TokenResponse, bool]:
    """The whole token an app gave ``set_token()`` for ``customer_id``, checked as a server's
    answer is, and whether its access token has expired already (``expires_at`` past); a
    ``ProviderError`` naming the plugin when it cannot be used."""
    if not isinstance(token, Mapping):
        raise ProviderError(
            "plugin 'oauth2': set_token needs the token response as a mapping, not "
            f"{type_with_article(token)}",
            plugin="oauth2",
            customer_id=customer_id,
        )
    data = dict(token)
    expired = False
    expires_at = data.pop("expires_at", None)
    if expires_at is not None:
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise ProviderError(
                f"plugin 'oauth2': the token given to set_token() for customer "
                f"{customer_id!r} was refused: its expires_at is "
                f"{type_with_article(expires_at)}, not seconds since the epoch",
                plugin="oauth2",
                customer_id=customer_id,
            )
        left = expires_at - time.time()
        expired = left <= 0
        data["expires_in"] = 1 if expired else left
    response = parse_token_response(
        data,
        settings,
        endpoint=describe_endpoint(settings.token_endpoint or settings.issuer or ""),
        customer_id=customer_id,
        given_to="set_token()",
    )
    if expired and response.refresh_token is None:
        raise ProviderError(
            f"plugin 'oauth2': the token given to set_token() for customer {customer_id!r} "
            "has expired and holds no refresh token; log the customer in again",
            plugin="oauth2",
            customer_id=customer_id,
        )
    return response, expired
