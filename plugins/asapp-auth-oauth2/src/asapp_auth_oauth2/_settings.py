"""The plugin's settings: every name, its default, and its validation at configuration time."""

from __future__ import annotations

import importlib
import ipaddress
import math
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from asapp_auth.errors import ConfigurationError
from asapp_auth.paths import setting_path
from asapp_auth.plugins import SettingsProblems
from asapp_auth.secrets import Secret, read_secret_file, resolve_secret

from ._dpop import DPoPKey
from ._dpop_settings import DPOP_SETTINGS, parse_dpop
from ._login_settings import LOGIN_SETTINGS, LoginSettings, parse_login
from ._secret_jwt import HMAC_ALGORITHMS, min_secret_bytes

__all__ = ["CLIENT_AUTH_METHODS", "GRANTS", "OAuth2Settings", "Signer", "parse_settings"]

PLUGIN = "oauth2"

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


@runtime_checkable
class Signer(Protocol):
    """What the plugin needs of a signer: the JWT plugin's ``asapp_auth_jwt.Signer`` is one."""

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str: ...


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


def _fail(name: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"plugin {PLUGIN!r}: setting {name!r} {problem}")


def _str(name: str, value: object, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if value is None:
        raise _fail(name, "is missing; it is required")
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, f"must be a non-empty str, not {type(value).__name__}")
    return value.strip()


def _number(name: str, value: object, *, minimum: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(name, f"must be a finite number, not {type(value).__name__}")
    if value < minimum or (value == minimum and not allow_zero and minimum == 0):
        floor = f">= {minimum}" if allow_zero or minimum else "> 0"
        raise _fail(name, f"must be {floor}, got {value!r}")
    return float(value)


def _int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(name, f"must be an int >= {minimum}, got {value!r}")
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"must be true or false, not {type(value).__name__}")
    return value


def _strings(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split() if isinstance(value, str) else value
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise _fail(name, "must be a str or a list of str")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item or any(c.isspace() for c in item):
            raise _fail(name, "must hold non-empty str values without whitespace")
        if item not in out:
            out.append(item)
    return tuple(out)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(name: str, url: object, *, allow_http: bool) -> str:
    """Validate an endpoint URL: absolute, https (or http on loopback or with ``allow_http``)."""
    text = _str(name, url, required=True)
    assert text is not None
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _fail(name, f"must be an absolute https URL, got {text!r}")
    if parts.username or parts.password:
        raise _fail(name, "must not hold a user name or password; use client_id and client_secret")
    if parts.fragment:
        raise _fail(name, "must not hold a fragment")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise _fail(
            name,
            "uses http, which would send credentials in clear; use https "
            "(http is accepted for loopback hosts, or with allow_http=true)",
        )
    return text


def _callable(name: str, value: object) -> Callable[..., Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        module_name, _, attr = value.partition(":")
        if not module_name or not attr:
            raise _fail(name, "must be a callable or a 'module:attribute' reference")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise _fail(name, f"refers to {value!r}, which cannot be imported ({exc})") from None
        value = target
    if not callable(value):
        raise _fail(name, f"must be callable, not {type(value).__name__}")
    return value


def _verify(value: object) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return setting_path(value)  # beside the configuration file that names it, if any
    raise _fail("verify", "must be true, false or the path of a CA bundle")


def _cert(value: object) -> str | tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return setting_path(value)
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, str) and v for v in value)
    ):
        return (setting_path(value[0]), setting_path(value[1]))
    raise _fail("cert", "must be a PEM path, or a [certificate path, key path] pair")


def _own_ssl_context(raw: Mapping[str, Any]) -> ssl.SSLContext | None:
    """An ``ssl.SSLContext`` given in code, used as it is: then it alone decides what is trusted
    and which client certificate is shown, so ``verify`` and ``cert`` may not be given too."""
    context = raw.get("ssl_context")
    if context is None:
        return None
    if not isinstance(context, ssl.SSLContext):
        raise _fail("ssl_context", f"must be an ssl.SSLContext, not {type(context).__name__}")
    given = [name for name in ("verify", "cert") if raw.get(name) is not None]
    if given:
        raise _fail(
            "ssl_context",
            f"was given with {given}, which it replaces; load the CA and the client certificate "
            "into the context (load_verify_locations, load_cert_chain), or leave ssl_context out",
        )
    return context


def _signer(raw: Mapping[str, Any]) -> Signer | None:
    signer = raw.get("signer")
    key = raw.get("signing_key")
    if signer is not None and key is not None:
        raise _fail("signer", "and 'signing_key' were both given; give one")
    if signer is not None:
        if not isinstance(signer, Signer):
            raise _fail("signer", "must have a sign(claims, headers=None) -> str method")
        return signer
    if key is None:
        return None
    try:
        # Imported by name: the JWT plugin is an optional extra, needed only here.
        jwt_plugin: Any = importlib.import_module("asapp_auth_jwt")
    except ImportError:
        raise _fail(
            "signing_key",
            "needs the JWT plugin (asapp-auth-jwt, on no package index): from a checkout of "
            "asapp-auth, pip install ./plugins/asapp-auth-jwt",
        ) from None
    if isinstance(key, bytes):
        pem = key
    elif isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        pem = key.encode()  # inline PEM text: never shown, unlike a path
    elif isinstance(key, str) and key.startswith("env:"):
        pem = resolve_secret(key, setting="signing_key", plugin=PLUGIN).encode()
    elif isinstance(key, str) and key:
        pem = read_secret_file(key.removeprefix("file:"), setting="signing_key", plugin=PLUGIN)
    else:
        raise _fail("signing_key", "must be a PEM path, 'env:NAME', or PEM text or bytes")
    raw_passphrase = raw.get("signing_key_passphrase")
    passphrase = None
    if raw_passphrase is not None:
        passphrase = resolve_secret(
            raw_passphrase, setting="signing_key_passphrase", plugin=PLUGIN
        ).encode()
    private_key = _load_pem_key(pem, passphrase)
    algorithm = _str("signing_algorithm", raw.get("signing_algorithm"))
    kid = _str("signing_kid", raw.get("signing_kid"))
    try:
        built = jwt_plugin.Signer(private_key, algorithm=algorithm, kid=kid)
    except ConfigurationError as exc:
        # The JWT plugin's reason (algorithm and key kind), under this plugin's setting names.
        reason = str(exc).removeprefix("plugin 'jwt': ")
        name = "signing_algorithm" if algorithm is not None else "signing_key"
        raise _fail(name, f"does not fit the signing key: {reason}") from None
    if not isinstance(built, Signer):
        raise _fail("signing_key", "did not give a signer with a sign() method")
    return built


def _load_pem_key(pem: bytes, passphrase: bytes | None) -> Any:
    """The private key of ``pem``; a ``ConfigurationError`` naming the setting at fault."""
    # cryptography comes with the JWT plugin (the optional extra), imported by the caller.
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 - optional extra
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - optional extra

    if b"PRIVATE KEY-----" not in pem:
        raise _fail(
            "signing_key",
            "is not a PEM private key (-----BEGIN ... PRIVATE KEY-----); a public key or "
            "certificate cannot sign",
        )
    try:
        return serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise _fail(
                "signing_key",
                "is an encrypted PEM key; give its passphrase in 'signing_key_passphrase' "
                "(env:NAME or file:PATH)",
            ) from None
        raise _fail(
            "signing_key_passphrase", "was given, but 'signing_key' is not encrypted; remove it"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if passphrase is not None:
            raise _fail(
                "signing_key_passphrase",
                "does not decrypt 'signing_key' (wrong passphrase, or the key is damaged)",
            ) from None
        raise _fail(
            "signing_key", "could not be loaded: it is not a valid PEM private key"
        ) from None


def _ssl_context(
    verify: bool | str, cert: str | tuple[str, str] | None, trust_env: bool
) -> ssl.SSLContext | None:
    """The TLS context for a CA path or a client certificate, loaded now so that a bad file is a
    configuration error; ``None`` leaves httpx's default (``verify`` True or False, no cert)."""
    if isinstance(verify, bool) and cert is None:
        return None
    if isinstance(verify, str):
        try:
            if os.path.isdir(verify):
                context = ssl.create_default_context(capath=verify)
            else:
                context = ssl.create_default_context(cafile=verify)
        except (OSError, ValueError) as exc:
            raise _fail(
                "verify",
                f"names {verify!r}, which is not a readable PEM CA bundle or directory "
                f"({type(exc).__name__}); give the CA that issued the server's certificate",
            ) from None
    else:
        context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        files = [certfile] if keyfile is None else [certfile, keyfile]
        try:
            # The password callback stops OpenSSL from prompting on a terminal for an
            # encrypted key; such a key then fails to load like any other bad key.
            context.load_cert_chain(certfile, keyfile, password=lambda: b"")
        except (OSError, ValueError) as exc:
            raise _fail(
                "cert",
                f"names {files!r}, which could not be loaded as a PEM certificate and its "
                f"unencrypted private key ({type(exc).__name__}); check the paths, and that the "
                "key belongs to the certificate",
            ) from None
    return context


def _is_hmac(signer: Signer) -> bool:
    """An HMAC signer: the JWT plugin's says so; any other, by its ``algorithm``."""
    if getattr(signer, "is_symmetric", False) is True:
        return True
    algorithm = getattr(signer, "algorithm", None)
    return isinstance(algorithm, str) and algorithm.upper().startswith("HS")


def _mac_algorithm(raw: Mapping[str, Any], client_auth: str, secret: Secret | None) -> str:
    """The client_secret_jwt algorithm, refused with other methods and for a short secret."""
    name = "token_endpoint_auth_signing_alg"
    value = raw.get(name)
    if client_auth != "client_secret_jwt":
        if value is not None:
            raise _fail(
                name,
                f"applies to client_auth='client_secret_jwt', not {client_auth!r} (a signer's "
                "own algorithm applies to private_key_jwt: signing_algorithm)",
            )
        return "HS256"
    algorithm = "HS256" if value is None else value
    if algorithm not in HMAC_ALGORITHMS:
        raise _fail(name, f"must be one of {sorted(HMAC_ALGORITHMS)}, got {algorithm!r}")
    assert secret is not None
    size, needed = len(secret.reveal().encode("utf-8")), min_secret_bytes(algorithm)
    if size < needed:
        raise _fail(
            "client_secret",
            f"is {size} bytes; {algorithm} for client_secret_jwt needs at least {needed} (the "
            "hash size, RFC 7518 section 3.2): have the server issue a longer secret, or use "
            "client_secret_basic",
        )
    return str(algorithm)


_KNOWN = (
    frozenset(OAuth2Settings.__dataclass_fields__)
    | LOGIN_SETTINGS
    | DPOP_SETTINGS
    | {
        "signing_key",
        "signing_algorithm",
        "signing_kid",
        "signing_key_passphrase",
    }
)


def _grant(value: object) -> str:
    by_urn = {urn: name for name, urn in GRANT_URNS.items()}
    grant = by_urn.get(value, value) if isinstance(value, str) else value
    if grant not in GRANT_URNS:
        raise _fail("grant", f"must be one of {list(GRANTS)}, got {grant!r}")
    return str(grant)


def _issuer(value: object, allow_http: bool) -> str:
    issuer = check_url("issuer", value, allow_http=allow_http)
    if urlsplit(issuer).query:
        raise _fail("issuer", "must not hold a query (RFC 8414 section 2)")
    return issuer


def _client_auth(value: object) -> str:
    if value not in CLIENT_AUTH_METHODS:
        raise _fail("client_auth", f"must be one of {list(CLIENT_AUTH_METHODS)}, got {value!r}")
    return str(value)


def _resources(value: object) -> tuple[str, ...]:
    resources = _strings("resource", value)
    for uri in resources:
        parts = urlsplit(uri)
        if not parts.scheme or parts.fragment:
            raise _fail("resource", f"must hold absolute URIs without fragment, got {uri!r}")
    return resources


def _numbers(raw: Mapping[str, Any], problems: SettingsProblems) -> dict[str, Any]:
    """The numeric and flag settings, each checked on its own, with their defaults."""
    check = problems.check
    values: dict[str, Any] = {}
    for name, default, minimum, allow_zero in _NUMBERS:
        values[name] = check(
            name, _number, name, raw.get(name, default), minimum=minimum, allow_zero=allow_zero
        )
    for name, default, least in _INTS:
        values[name] = check(name, _int, name, raw.get(name, default), minimum=least)
    values["revoke_on_clear"] = check(
        "revoke_on_clear", _bool, "revoke_on_clear", raw.get("revoke_on_clear", False)
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
    allow_http = check("allow_http", _bool, "allow_http", raw.get("allow_http", False)) or False
    # The plugin's own login yields a refresh token per customer: that is its grant.
    default_grant = "client_credentials" if raw.get("login") is None else "refresh_token"
    grant = check("grant", _grant, raw.get("grant", default_grant))
    client_id = check("client_id", _str, "client_id", raw.get("client_id"), required=True)
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
    signer = check("signing_key" if "signing_key" in raw else "signer", _signer, raw)
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
                    _mac_algorithm,
                    raw,
                    client_auth,
                    client_secret,
                )
                or "HS256"
            )
    if client_auth == "private_key_jwt" and signer is not None and _is_hmac(signer):
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
    cert = check("cert", _cert, raw.get("cert"))
    own_context = check("ssl_context", _own_ssl_context, raw)
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
    verify = check("verify", _verify, raw.get("verify", True))
    trust_env = check("trust_env", _bool, "trust_env", raw.get("trust_env", True))
    if grant == "token_exchange" and raw.get("subject_token_for") is None:
        problems.add(
            "subject_token_for",
            "setting 'subject_token_for' is required with grant='token_exchange'",
        )
    values = {
        "proxy": check("proxy", _str, "proxy", raw.get("proxy")),
        "scope": check("scope", _strings, "scope", raw.get("scope")),
        "audience": check("audience", _strings, "audience", raw.get("audience")),
        "resource": check("resource", _resources, raw.get("resource")),
        "assertion_audience": check(
            "assertion_audience", _str, "assertion_audience", raw.get("assertion_audience")
        ),
        "subject_token_type": check(
            "subject_token_type",
            _str,
            "subject_token_type",
            raw.get("subject_token_type", ACCESS_TOKEN_TYPE),
            required=True,
        ),
        "requested_token_type": check(
            "requested_token_type", _str, "requested_token_type", raw.get("requested_token_type")
        ),
        **{name: check(name, _callable, name, raw.get(name)) for name in _CALLABLES},
        **_numbers(raw, problems),
    }
    ssl_context = own_context
    if ssl_context is None and not problems.failed("verify", "cert", "trust_env", "ssl_context"):
        ssl_context = check("verify", _ssl_context, verify, cert, trust_env)  # type: ignore[arg-type]
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
