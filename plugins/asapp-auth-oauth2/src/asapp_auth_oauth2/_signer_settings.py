"""The settings that sign assertions: ``signer``, or ``signing_key`` (a PEM key the JWT plugin
signs with), for ``private_key_jwt`` and the ``jwt_bearer`` grant; and
``token_endpoint_auth_signing_alg``, the MAC of ``client_secret_jwt``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from asapp_auth.errors import ConfigurationError
from asapp_auth.secrets import Secret

from ._pem_key import load_private_key
from ._secret_jwt import HMAC_ALGORITHMS, min_secret_bytes
from ._setting_checks import fail, str_setting

__all__ = ["Signer", "is_hmac", "mac_algorithm", "signer_setting"]


@runtime_checkable
class Signer(Protocol):
    """What the plugin needs of a signer: the JWT plugin's ``asapp_auth_jwt.Signer`` is one."""

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str: ...


def signer_setting(raw: Mapping[str, Any]) -> Signer | None:
    """The ``signer`` setting, or the JWT plugin's signer for ``signing_key`` (with
    ``signing_key_passphrase``, ``signing_algorithm``, ``signing_kid``); ``None`` for neither."""
    signer = raw.get("signer")
    key = raw.get("signing_key")
    if signer is not None and key is not None:
        raise fail("signer", "and 'signing_key' were both given; give one")
    if signer is not None:
        if not isinstance(signer, Signer):
            raise fail("signer", "must have a sign(claims, headers=None) -> str method")
        return signer
    if key is None:
        return None
    try:
        # Imported by name: the JWT plugin is an optional extra, needed only here.
        jwt_plugin: Any = importlib.import_module("asapp_auth_jwt")
    except ImportError:
        raise fail(
            "signing_key",
            "needs the JWT plugin (asapp-auth-jwt, on no package index): from a checkout of "
            "asapp-auth, pip install ./plugins/asapp-auth-jwt",
        ) from None
    private_key = load_private_key(raw, "signing_key")
    algorithm = str_setting("signing_algorithm", raw.get("signing_algorithm"))
    kid = str_setting("signing_kid", raw.get("signing_kid"))
    try:
        built = jwt_plugin.Signer(private_key, algorithm=algorithm, kid=kid)
    except ConfigurationError as exc:
        # The JWT plugin's reason (algorithm and key kind), under this plugin's setting names.
        reason = str(exc).removeprefix("plugin 'jwt': ")
        name = "signing_algorithm" if algorithm is not None else "signing_key"
        raise fail(name, f"does not fit the signing key: {reason}") from None
    if not isinstance(built, Signer):
        raise fail("signing_key", "did not give a signer with a sign() method")
    return built


def is_hmac(signer: Signer) -> bool:
    """An HMAC signer: the JWT plugin's says so; any other, by its ``algorithm``."""
    if getattr(signer, "is_symmetric", False) is True:
        return True
    algorithm = getattr(signer, "algorithm", None)
    return isinstance(algorithm, str) and algorithm.upper().startswith("HS")


def mac_algorithm(raw: Mapping[str, Any], client_auth: str, secret: Secret | None) -> str:
    """The client_secret_jwt algorithm, refused with other methods and for a short secret."""
    name = "token_endpoint_auth_signing_alg"
    value = raw.get(name)
    if client_auth != "client_secret_jwt":
        if value is not None:
            raise fail(
                name,
                f"applies to client_auth='client_secret_jwt', not {client_auth!r} (a signer's "
                "own algorithm applies to private_key_jwt: signing_algorithm)",
            )
        return "HS256"
    algorithm = "HS256" if value is None else value
    if algorithm not in HMAC_ALGORITHMS:
        raise fail(name, f"must be one of {sorted(HMAC_ALGORITHMS)}, got {algorithm!r}")
    assert secret is not None
    size, needed = len(secret.reveal().encode("utf-8")), min_secret_bytes(algorithm)
    if size < needed:
        raise fail(
            "client_secret",
            f"is {size} bytes; {algorithm} for client_secret_jwt needs at least {needed} (the "
            "hash size, RFC 7518 section 3.2): have the server issue a longer secret, or use "
            "client_secret_basic",
        )
    return str(algorithm)
