"""The exceptions the OAuth2 plugin raises, all under ``asapp_auth.errors``.

A failure to get a token is a ``ProviderError`` (the pipeline caches nothing and the next request
asks again); a customer whose own grant is gone (``invalid_grant`` on a per-customer grant) is a
``LoginRequiredError``, which the pipeline turns into ``on_login_required``. Messages and reprs
carry the endpoint, the OAuth2 ``error`` code and a cleaned ``error_description``; never a secret,
assertion, refresh token or access token.
"""

from __future__ import annotations

from asapp_auth.errors import LoginRequiredError, ProviderError, ProviderTimeoutError

__all__ = [
    "DiscoveryError",
    "IDTokenError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "LoginDeniedError",
    "LoginError",
    "LoginTimeoutError",
    "OAuth2Error",
    "SessionGoneError",
    "StateMismatchError",
    "TLSError",
    "TokenEndpointTimeoutError",
    "TokenEndpointUnavailableError",
    "TokenResponseError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "error_class",
]

PLUGIN = "oauth2"


class OAuth2Error(ProviderError):
    """The authorization server answered with an RFC 6749 section 5.2 error.

    ``error`` is the server's error code, ``error_description`` its (cleaned, shortened)
    description or ``None``, ``endpoint`` the URL that answered, ``status_code`` the HTTP status.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str,
        error_description: str | None = None,
        endpoint: str,
        status_code: int | None = None,
        customer_id: str | None = None,
    ) -> None:
        super().__init__(message, plugin=PLUGIN, customer_id=customer_id)
        self.error = error
        self.error_description = error_description
        self.endpoint = endpoint
        self.status_code = status_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error={self.error!r}, "
            f"error_description={self.error_description!r}, endpoint={self.endpoint!r})"
        )


class InvalidRequestError(OAuth2Error):
    """``invalid_request``: the server did not accept the request's parameters."""


class InvalidClientError(OAuth2Error):
    """``invalid_client``: client authentication failed (id, secret, key or certificate)."""


class InvalidGrantError(OAuth2Error):
    """``invalid_grant`` for a grant that belongs to the client, not to a customer."""


class UnauthorizedClientError(OAuth2Error):
    """``unauthorized_client``: this client may not use this grant type."""


class UnsupportedGrantTypeError(OAuth2Error):
    """``unsupported_grant_type``: the server does not offer this grant type."""


class InvalidScopeError(OAuth2Error):
    """``invalid_scope``: the scope asked for is unknown or exceeds what was granted."""


class SessionGoneError(LoginRequiredError):
    """``invalid_grant`` (or no grant at all) for a per-customer grant: the customer's own session
    is gone, so the customer must log in again. The pipeline runs ``on_login_required``."""

    def __init__(
        self,
        message: str,
        *,
        customer_id: str | None,
        error: str = "invalid_grant",
        error_description: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, customer_id=customer_id)
        self.plugin = PLUGIN
        self.error = error
        self.error_description = error_description
        self.endpoint = endpoint


class LoginError(LoginRequiredError):
    """The plugin's own login (``login`` setting) failed; the requests that waited for it raise
    this, and the next request that needs a login starts a new one.

    ``endpoint`` is the endpoint involved (authorization, device authorization, token or JWKS
    endpoint, or the loopback redirect URI), ``error`` an OAuth2 error code or the plugin's own
    (``state_mismatch``, ``no_browser``...), ``error_description`` the server's cleaned words.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        error: str,
        error_description: str | None = None,
        customer_id: str | None = None,
    ) -> None:
        super().__init__(message, customer_id=customer_id)
        self.plugin = PLUGIN
        self.endpoint = endpoint
        self.error = error
        self.error_description = error_description

    def __repr__(self) -> str:
        return f"{type(self).__name__}(error={self.error!r}, endpoint={self.endpoint!r})"


class LoginDeniedError(LoginError):
    """``access_denied``: the customer (or the server) refused the authorization."""


class LoginTimeoutError(LoginError):
    """The login was not completed in time: no redirect came back to the loopback server, or the
    device code expired (``expired_token``), within the login's deadline."""


class StateMismatchError(LoginError):
    """The redirect to the loopback server carried a ``state`` other than the one this login
    sent (or none): it was not the answer to this login's request, so it was refused."""


class IDTokenError(LoginError):
    """The ID token failed a check of OpenID Connect Core section 3.1.3.7; ``check`` names it
    (``signature``, ``alg``, ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nonce``...)."""

    def __init__(self, message: str, *, endpoint: str, check: str) -> None:
        super().__init__(message, endpoint=endpoint, error="invalid_id_token")
        self.check = check

    def __repr__(self) -> str:
        return f"IDTokenError(check={self.check!r}, endpoint={self.endpoint!r})"


class TokenResponseError(ProviderError):
    """The token endpoint answered something that is not a usable token response: HTML, non-JSON
    or truncated body, wrong types, a token type other than Bearer, an absurd lifetime."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status_code: int | None = None,
        customer_id: str | None = None,
    ) -> None:
        super().__init__(message, plugin=PLUGIN, customer_id=customer_id)
        self.endpoint = endpoint
        self.status_code = status_code


class TokenEndpointUnavailableError(ProviderError):
    """The endpoint could not be reached or kept failing (connection errors, timeouts, 5xx, 429)
    after every retry allowed. ``attempts`` counts the requests made."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        attempts: int,
        status_code: int | None = None,
        customer_id: str | None = None,
    ) -> None:
        super().__init__(message, plugin=PLUGIN, customer_id=customer_id)
        self.endpoint = endpoint
        self.attempts = attempts
        self.status_code = status_code


class TokenEndpointTimeoutError(TokenEndpointUnavailableError, ProviderTimeoutError):
    """The endpoint did not answer within the time the pipeline gave the plugin (the
    ``provide_context`` deadline, from ``provider_timeout``), or no time was left for another
    attempt. A ``ProviderTimeoutError`` as the pipeline documents, and still a
    ``TokenEndpointUnavailableError``; ``attempts`` counts the requests made."""


class TLSError(TokenEndpointUnavailableError):
    """The TLS handshake with the endpoint failed: its server certificate was not trusted (the
    ``verify`` setting), or it refused the plugin's client certificate or the lack of one (the
    ``cert`` setting). Retrying cannot help, so the request is not retried; ``attempts`` is 1."""


class DiscoveryError(ProviderError):
    """The issuer's metadata (RFC 8414 / OpenID Connect discovery) could not be fetched or used."""

    def __init__(self, message: str, *, issuer: str) -> None:
        super().__init__(message, plugin=PLUGIN)
        self.issuer = issuer


_BY_CODE: dict[str, type[OAuth2Error]] = {
    "invalid_request": InvalidRequestError,
    "invalid_client": InvalidClientError,
    "invalid_grant": InvalidGrantError,
    "unauthorized_client": UnauthorizedClientError,
    "unsupported_grant_type": UnsupportedGrantTypeError,
    "invalid_scope": InvalidScopeError,
}


def error_class(code: str) -> type[OAuth2Error]:
    """The exception class for an RFC 6749 error code; ``OAuth2Error`` for any other code."""
    return _BY_CODE.get(code, OAuth2Error)
