"""asapp-auth-oauth2: access tokens from an OAuth 2.0 authorization server, as a provider plugin.

The entry point ``oauth2`` of the ``asapp_auth`` group is this module: ``from_settings`` makes the
plugin object (an ``OAuth2Provider``) from a pipeline's settings.
"""

from importlib import metadata as _metadata

from asapp_auth.secrets import Secret, resolve_secret

from ._device import DeviceCode
from ._login import Login
from ._login_settings import LOGIN_METHODS
from ._provider import OAuth2Provider, from_settings
from ._settings import CLIENT_AUTH_METHODS, GRANTS, OAuth2Settings
from .errors import (
    DiscoveryError,
    IDTokenError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    LoginDeniedError,
    LoginError,
    LoginTimeoutError,
    OAuth2Error,
    SessionGoneError,
    StateMismatchError,
    TLSError,
    TokenEndpointTimeoutError,
    TokenEndpointUnavailableError,
    TokenResponseError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)

try:
    __version__ = _metadata.version("asapp-auth-oauth2")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "CLIENT_AUTH_METHODS",
    "GRANTS",
    "LOGIN_METHODS",
    "DeviceCode",
    "DiscoveryError",
    "IDTokenError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "Login",
    "LoginDeniedError",
    "LoginError",
    "LoginTimeoutError",
    "OAuth2Error",
    "OAuth2Provider",
    "OAuth2Settings",
    "Secret",
    "SessionGoneError",
    "StateMismatchError",
    "TLSError",
    "TokenEndpointTimeoutError",
    "TokenEndpointUnavailableError",
    "TokenResponseError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "__version__",
    "from_settings",
    "resolve_secret",
]
