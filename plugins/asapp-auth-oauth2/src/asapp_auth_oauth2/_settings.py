"""The plugin's settings: every name, its default, and its validation at configuration time."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from asapp_auth.plugins import SettingsProblems
from asapp_auth.secrets import Secret, resolve_secret

from ._dpop import DPoPKey
from ._dpop_settings import DPOP_SETTINGS, parse_dpop
from ._login_settings import LOGIN_SETTINGS, LoginSettings, parse_login
from ._setting_checks import (
    PLUGIN,
    bool_setting,
    callable_setting,
    check_url,
    fail,
    int_setting,
    number_setting,
    str_setting,
    strings_setting,
)
from ._signer_settings import Signer, is_hmac, mac_algorithm, signer_setting
from ._tls_settings import cert_setting, own_ssl_context, ssl_context_for, verify_setting

__all__ = ["CLIENT_AUTH_METHODS", "GRANTS", "OAuth2Settings", "Signer", "parse_settings"]


GRANT_URNS = {
    "client_credentials": "client_credentials",
    "refresh_token": "refresh_token",
    "token_exchange": "urn:ietf:params:oauth:grant-type:token-exchange",
    "jwt_bearer": "urn:ietf:params:oauth:grant-type:jwt-bearer",
}
GRANTS = tuple(GRANT_URNS)
"""The names the ``grant`` setting accepts (a grant's URN is accepted too)."""
# Grants whose token belongs to one customer; client_credentials is shared by all of them.
PER_CUSTOMER_GRANTS = frozenset({"refresh_token", "token_exchange", "jwt_bearer"})
CLIENT_AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "none",
)
"""The names the ``client_auth`` setting accepts: how the client authenticates to the server."""
# The methods that authenticate with client_secret.
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


@dataclass(frozen=True, slots=True)
class OAuth2Settings:
    """Validated settings. Secrets are ``Secret`` objects; ``repr`` shows none of them."""

    grant: str
    client_id: str
    token_endpoint: str | None = None
    issuer: str | None = None
    revocation_endpoint: str | None = None
    client_secret: Secret | None = None
    client_auth: str = "none"
    scope: str | None = None
    audience: tuple[str, ...] = ()
    resource: tuple[str, ...] = ()
    refresh_token_for: Callable[[str], str | None] | None = field(default=None, repr=False)
    on_refresh_token: Callable[[str, str], None] | None = field(default=None, repr=False)
    on_token: Callable[[str, dict[str, Any]], None] | None = field(default=None, repr=False)
    subject_token_for: Callable[[str], str | None] | None = field(default=None, repr=False)
    subject_token_type: str = ACCESS_TOKEN_TYPE
    requested_token_type: str | None = None
    signer: Signer | None = field(default=None, repr=False)
    assertion_lifetime: float = 60.0
    # The MAC of client_secret_jwt assertions (RFC 7591's name for it).
    token_endpoint_auth_signing_alg: str = "HS256"  # noqa: S105 - an algorithm name
    assertion_audience: str | None = None
    max_retries: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    max_retry_after: float = 30.0
    timeout: float = 10.0
    connect_timeout: float = 5.0
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    # Given in code, or built from ``verify`` (a CA path) and ``cert`` at configuration time;
    # None: httpx's default.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    proxy: str | None = None
    trust_env: bool = True
    default_expires_in: float = 600.0
    max_expires_in: float = 366 * 24 * 3600.0
    expiry_margin: float = 30.0
    max_response_bytes: int = 1024 * 1024
    max_cached_tokens: int = 10_000
    revoke_on_clear: bool = False
    # Each revocation's whole budget (attempts, backoff), from when the customer was cleared.
    revocation_timeout: float = 10.0
    allow_http: bool = False
    login: LoginSettings | None = None
    # The client's DPoP key (RFC 9449) when ``dpop`` is on; None: Bearer tokens.
    dpop: DPoPKey | None = field(default=None, repr=False)

    @property
    def per_customer(self) -> bool:
        return self.grant in PER_CUSTOMER_GRANTS

    @property
    def grant_type(self) -> str:
        return GRANT_URNS[self.grant]


_KNOWN = (
    frozenset(OAuth2Settings.__dataclass_fields__)
    | LOGIN_SETTINGS
    | DPOP_SETTINGS
    | {"signing_key", "signing_algorithm", "signing_kid", "signing_key_passphrase"}
)


def _grant(value: object) -> str:
    by_urn = {urn: name for name, urn in GRANT_URNS.items()}
    grant = by_urn.get(value, value) if isinstance(value, str) else value
    if grant not in GRANT_URNS:
        raise fail("grant", f"must be one of {list(GRANTS)}, got {grant!r}")
    return str(grant)


def _issuer(value: object, allow_http: bool) -> str:
    issuer = check_url("issuer", value, allow_http=allow_http)
    if urlsplit(issuer).query:
        raise fail("issuer", "must not hold a query (RFC 8414 section 2)")
    return issuer


def _client_auth(value: object) -> str:
    if value not in CLIENT_AUTH_METHODS:
        raise fail("client_auth", f"must be one of {list(CLIENT_AUTH_METHODS)}, got {value!r}")
    return str(value)


def _resources(value: object) -> tuple[str, ...]:
    resources = strings_setting("resource", value)
    for uri in resources:
        parts = urlsplit(uri)
        if not parts.scheme or parts.fragment:
            raise fail("resource", f"must hold absolute URIs without fragment, got {uri!r}")
    return resources


def _numbers(raw: Mapping[str, Any], problems: SettingsProblems) -> dict[str, Any]:
    """The numeric and flag settings, each checked on its own, with their defaults."""
    check = problems.check
    values: dict[str, Any] = {}
    for name, default, minimum, allow_zero in _NUMBERS:
        values[name] = check(
            name,
            number_setting,
            name,
            raw.get(name, default),
            minimum=minimum,
            allow_zero=allow_zero,
        )
    for name, default, least in _INTS:
        values[name] = check(name, int_setting, name, raw.get(name, default), minimum=least)
    values["revoke_on_clear"] = check(
        "revoke_on_clear", bool_setting, "revoke_on_clear", raw.get("revoke_on_clear", False)
    )
    return values


# (name, default, minimum, zero allowed) of the number settings, and (name, default, minimum)
# of the whole-number ones.
_NUMBERS = (
    ("assertion_lifetime", 60.0, 0, False),
    ("backoff_base", 0.2, 0, True),
    ("backoff_max", 5.0, 0, True),
    ("max_retry_after", 30.0, 0, True),
    ("timeout", 10.0, 0, False),
    ("connect_timeout", 5.0, 0, False),
    ("default_expires_in", 600.0, 0, False),
    ("max_expires_in", 366 * 24 * 3600.0, 0, False),
    ("expiry_margin", 30.0, 0, True),
    ("revocation_timeout", 10.0, 0, False),
)
_INTS = (
    ("max_retries", 3, 0),
    ("max_response_bytes", 1024 * 1024, 1024),
    ("max_cached_tokens", 10_000, 1),
)


def parse_settings(raw: Mapping[str, Any]) -> OAuth2Settings:
    """Validate ``raw`` settings; raise one ``ConfigurationError`` holding every problem, in the
    order the settings were given (each setting on its own first, then how they combine)."""
    problems = SettingsProblems(PLUGIN, raw, known=_KNOWN)
    check = problems.check
    allow_http = (
        check("allow_http", bool_setting, "allow_http", raw.get("allow_http", False)) or False
    )
    # The plugin's own login yields a refresh token per customer: that is its grant.
    default_grant = "client_credentials" if raw.get("login") is None else "refresh_token"
    grant = check("grant", _grant, raw.get("grant", default_grant))
    client_id = check("client_id", str_setting, "client_id", raw.get("client_id"), required=True)
    token_endpoint = raw.get("token_endpoint")
    issuer = raw.get("issuer")
    if token_endpoint is None and issuer is None:
        problems.add(None, "give 'token_endpoint', or 'issuer' to discover it (RFC 8414)")
    if token_endpoint is not None:
        token_endpoint = check(
            "token_endpoint", check_url, "token_endpoint", token_endpoint, allow_http=allow_http
        )
    if issuer is not None:
        issuer = check("issuer", _issuer, issuer, allow_http)
    revocation_endpoint = raw.get("revocation_endpoint")
    if revocation_endpoint is not None:
        revocation_endpoint = check(
            "revocation_endpoint",
            check_url,
            "revocation_endpoint",
            revocation_endpoint,
            allow_http=allow_http,
        )
    secret = raw.get("client_secret")
    client_secret = None
    if secret is not None:
        resolved = check(
            "client_secret", resolve_secret, secret, setting="client_secret", plugin=PLUGIN
        )
        client_secret = None if resolved is None else Secret(resolved)
    signer = check("signing_key" if "signing_key" in raw else "signer", signer_setting, raw)
    default_auth = "client_secret_basic" if client_secret else "none"
    if signer is not None and not client_secret and grant != "jwt_bearer":
        default_auth = "private_key_jwt"
    client_auth = check("client_auth", _client_auth, raw.get("client_auth", default_auth))
    mac_alg = "HS256"
    if client_auth is not None and not problems.failed("client_secret"):
        if client_auth in SECRET_METHODS and client_secret is None:
            problems.add(
                "client_secret",
                f"setting 'client_secret' is required with client_auth={client_auth!r}",
            )
        elif client_auth not in SECRET_METHODS and client_secret:
            problems.add(
                "client_secret",
                f"setting 'client_secret' was given but client_auth is {client_auth!r}, which "
                "does not use it",
            )
        else:
            mac_alg = (
                check(
                    "token_endpoint_auth_signing_alg",
                    mac_algorithm,
                    raw,
                    client_auth,
                    client_secret,
                )
                or "HS256"
            )
    if client_auth == "private_key_jwt" and signer is not None and is_hmac(signer):
        problems.add(
            "signer",
            f"setting 'signer' MACs with a shared secret ({getattr(signer, 'algorithm', 'HMAC')}), "
            "which is client_secret_jwt, not private_key_jwt (RFC 7523 section 2.2: "
            "private_key_jwt signs with a private key); set client_auth='client_secret_jwt' with "
            "that secret as client_secret",
        )
    needs_signer = client_auth == "private_key_jwt" or grant == "jwt_bearer"
    if signer is None and needs_signer and not problems.failed("signer", "signing_key"):
        needs = (
            "client_auth='private_key_jwt'" if client_auth == "private_key_jwt" else "jwt_bearer"
        )
        problems.add("signer", f"setting 'signer' (or 'signing_key') is required with {needs}")
    cert = check("cert", cert_setting, raw.get("cert"))
    own_context = check("ssl_context", own_ssl_context, raw)
    if (
        client_auth == "tls_client_auth"
        and cert is None
        and own_context is None
        and not problems.failed("cert", "ssl_context")
    ):
        problems.add(
            "cert",
            "setting 'cert' is required with client_auth='tls_client_auth' (RFC 8705), or an "
            "'ssl_context' holding the client certificate",
        )
    verify = check("verify", verify_setting, raw.get("verify", True))
    trust_env = check("trust_env", bool_setting, "trust_env", raw.get("trust_env", True))
    if grant == "token_exchange" and raw.get("subject_token_for") is None:
        problems.add(
            "subject_token_for",
            "setting 'subject_token_for' is required with grant='token_exchange'",
        )
    values = {
        "proxy": check("proxy", str_setting, "proxy", raw.get("proxy")),
        "scope": check("scope", strings_setting, "scope", raw.get("scope")),
        "audience": check("audience", strings_setting, "audience", raw.get("audience")),
        "resource": check("resource", _resources, raw.get("resource")),
        "assertion_audience": check(
            "assertion_audience", str_setting, "assertion_audience", raw.get("assertion_audience")
        ),
        "subject_token_type": check(
            "subject_token_type",
            str_setting,
            "subject_token_type",
            raw.get("subject_token_type", ACCESS_TOKEN_TYPE),
            required=True,
        ),
        "requested_token_type": check(
            "requested_token_type",
            str_setting,
            "requested_token_type",
            raw.get("requested_token_type"),
        ),
        **{name: check(name, callable_setting, name, raw.get(name)) for name in _CALLABLES},
        **_numbers(raw, problems),
    }
    ssl_context = own_context
    if ssl_context is None and not problems.failed("verify", "cert", "trust_env", "ssl_context"):
        ssl_context = check("verify", ssl_context_for, verify, cert, trust_env)  # type: ignore[arg-type]
    expires = (values["default_expires_in"], values["max_expires_in"])
    if None not in expires and expires[0] > expires[1]:
        problems.add(
            "default_expires_in", "setting 'default_expires_in' must not exceed max_expires_in"
        )
    backoff = (values["backoff_base"], values["backoff_max"])
    if None not in backoff and backoff[0] > backoff[1]:
        problems.add("backoff_base", "setting 'backoff_base' must not exceed backoff_max")
    login = None
    if not problems.failed("grant", "scope", "issuer", "allow_http"):
        login = check(
            "login",
            parse_login,
            raw,
            grant=grant,  # type: ignore[arg-type]
            scope=values["scope"],
            issuer=issuer,
            allow_http=allow_http,
        )
    dpop = parse_dpop(raw, problems)
    problems.raise_any()
    return OAuth2Settings(
        grant=grant,  # type: ignore[arg-type]
        client_id=client_id,  # type: ignore[arg-type]
        token_endpoint=token_endpoint,
        issuer=issuer,
        revocation_endpoint=revocation_endpoint,
        client_secret=client_secret,
        client_auth=client_auth,  # type: ignore[arg-type]
        signer=signer,
        token_endpoint_auth_signing_alg=mac_alg,
        verify=verify,  # type: ignore[arg-type]
        cert=cert,
        ssl_context=ssl_context,
        trust_env=trust_env,  # type: ignore[arg-type]
        allow_http=allow_http,
        login=login,
        dpop=dpop,
        **{**values, "scope": " ".join(values["scope"]) or None},
    )


_CALLABLES = ("refresh_token_for", "on_refresh_token", "on_token", "subject_token_for")
