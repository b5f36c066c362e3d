"""Keys: loading them from PEM and JWK, and describing their public half as a JWK.

Error messages say where a key came from (a file path, an environment variable, "inline") and what
is wrong with it; they never quote key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from asapp_auth.errors import ConfigurationError, type_with_article
from asapp_auth.secrets import read_secret_file

__all__ = [
    "ENTRY_POINT",
    "PLUGIN",
    "PrivateKey",
    "SigningKey",
    "b64url_decode",
    "b64url_encode",
    "jwk_to_key",
    "load_key",
    "public_jwk_of",
    "thumbprint",
]

ENTRY_POINT = "jwt"
PLUGIN = f"plugin {ENTRY_POINT!r}"
"""What starts every error message of this plugin, as of every plugin: ``plugin 'jwt'``."""

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
SigningKey: TypeAlias = PrivateKey | bytes
"""A private key object, or the secret of an HMAC algorithm."""

_B64_TO_URL = bytes.maketrans(b"+/", b"-_")

CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
"""Curve names of ``cryptography`` to those of JOSE."""


def b64url_encode(data: bytes) -> bytes:
    """Base64url without padding (RFC 7515 section 2)."""
    return binascii.b2a_base64(data, newline=False).translate(_B64_TO_URL).rstrip(b"=")


def b64url_decode(data: str | bytes) -> bytes:
    """Decode base64url with or without padding; raises ``ValueError`` on bad input."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def _int_to_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big")).decode("ascii")


def _member(jwk: Mapping[str, Any], name: str, where: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"{PLUGIN}: the JWK {where} has no {name!r} member (a base64url string); "
            "give a complete private JWK"
        )
    try:
        return b64url_decode(value)
    except (ValueError, binascii.Error):
        raise ConfigurationError(
            f"{PLUGIN}: the JWK {where} has a {name!r} member that is not base64url"
        ) from None


def _int_member(jwk: Mapping[str, Any], name: str, where: str) -> int:
    return int.from_bytes(_member(jwk, name, where), "big")


def jwk_to_key(jwk: Mapping[str, Any], where: str = "given inline") -> SigningKey:
    """The private key (or HMAC secret) a JWK describes; a public-only JWK is refused."""
    if not isinstance(jwk, Mapping):
        raise ConfigurationError(f"{PLUGIN}: a JWK must be a JSON object, not {type(jwk).__name__}")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ConfigurationError(
            f'{PLUGIN}: the JWK {where} has "use": {use!r}; only a "sig" key may sign'
        )
    ops = jwk.get("key_ops")
    if ops is not None and "sign" not in ops:
        raise ConfigurationError(
            f'{PLUGIN}: the JWK {where} has key_ops without "sign"; it may not sign'
        )
    kty = jwk.get("kty")
    public_only = ConfigurationError(
        f'{PLUGIN}: the JWK {where} is a public key; signing needs the private key (its "d" member)'
    )
    try:
        if kty == "oct":
            return _member(jwk, "k", where)
        if kty == "RSA":
            if "d" not in jwk:
                raise public_only
            n, e, d = (_int_member(jwk, m, where) for m in ("n", "e", "d"))
            if all(m in jwk for m in ("p", "q", "dp", "dq", "qi")):
                crt = ("p", "q", "dp", "dq", "qi")
                p, q, dp, dq, qi = (_int_member(jwk, m, where) for m in crt)
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
                dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
            public = rsa.RSAPublicNumbers(e, n)
            return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, public).private_key()
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in CURVES:
                raise ConfigurationError(
                    f"{PLUGIN}: the JWK {where} has curve {crv!r}; use one of {sorted(CURVES)}"
                )
            if "d" not in jwk:
                raise public_only
            d = _int_member(jwk, "d", where)
            ec_key = ec.derive_private_key(d, CURVES[crv]())
            numbers = ec_key.public_key().public_numbers()
            given = (_int_member(jwk, "x", where), _int_member(jwk, "y", where))
            if (numbers.x, numbers.y) != given:
                raise ConfigurationError(
                    f"{PLUGIN}: the JWK {where} has x/y members that do not match its d member"
                )
            return ec_key
        if kty == "OKP":
            crv = jwk.get("crv")
            if crv != "Ed25519":
                raise ConfigurationError(
                    f"{PLUGIN}: the JWK {where} has curve {crv!r}; only Ed25519 signs (EdDSA)"
                )
            if "d" not in jwk:
                raise public_only
            okp_key = ed25519.Ed25519PrivateKey.from_private_bytes(_member(jwk, "d", where))
            public_raw = okp_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            if "x" in jwk and _member(jwk, "x", where) != public_raw:
                raise ConfigurationError(
                    f"{PLUGIN}: the JWK {where} has an x member that does not match its d member"
                )
            return okp_key
    except ConfigurationError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigurationError(
            f"{PLUGIN}: the JWK {where} does not describe a valid {kty} private key"
        ) from None
    raise ConfigurationError(
        f"{PLUGIN}: the JWK {where} has kty {kty!r}; use RSA, EC, OKP (Ed25519) or oct"
    )


def pem_to_key(
    data: bytes,
    where: str,
    passphrase: str | bytes | None,
    named_by: str = "setting 'passphrase_env'",
) -> PrivateKey:
    """The private key of PEM ``data``, decrypted with ``passphrase`` when it is encrypted.

    ``named_by`` is what names the passphrase's environment variable, for the message
    about an encrypted key given none (a setting, or a command-line flag).
    """
    if b"PUBLIC KEY-----" in data or b"CERTIFICATE-----" in data:
        raise ConfigurationError(
            f"{PLUGIN}: the PEM key {where} is a public key or certificate; signing needs the "
            "private key"
        )
    password = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        if password is None:
            raise ConfigurationError(
                f"{PLUGIN}: the PEM key {where} is encrypted; give its passphrase "
                f"({named_by} names the environment variable that holds it)"
            ) from None
        raise ConfigurationError(
            f"{PLUGIN}: the PEM key {where} is not encrypted, but a passphrase was given; "
            "remove the passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        hint = "the passphrase is wrong, or " if password is not None else ""
        raise ConfigurationError(
            f"{PLUGIN}: the PEM key {where} could not be loaded: {hint}it is not a PEM private key "
            "(PKCS#8, PKCS#1 or SEC1)"
        ) from None
    if not isinstance(key, PRIVATE_KEY_TYPES):
        raise ConfigurationError(
            f"{PLUGIN}: the PEM key {where} is {type_with_article(key)}; use an RSA, EC (P-256, "
            "P-384, P-521) or Ed25519 key"
        )
    return key


def parse_key_data(
    data: bytes,
    where: str,
    passphrase: str | bytes | None = None,
    named_by: str = "setting 'passphrase_env'",
) -> SigningKey | dict[str, Any]:
    """Key material in any supported text form: PEM (a key), or JSON (a JWK or JWKS dict)."""
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            raise ConfigurationError(f"{PLUGIN}: the key {where} is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ConfigurationError(f"{PLUGIN}: the key {where} is not a JSON object")
        return parsed
    if stripped.startswith(b"-----BEGIN"):
        return pem_to_key(stripped, where, passphrase, named_by)
    raise ConfigurationError(
        f"{PLUGIN}: the key {where} is neither PEM (-----BEGIN ...) nor JSON (a JWK or JWKS)"
    )


def load_key(
    source: str | os.PathLike[str] | bytes | Mapping[str, Any],
    passphrase: str | bytes | None = None,
) -> SigningKey:
    """Load one private key: a PEM file path, PEM bytes or text, a JWK file, or a JWK dict.

    Returns a ``cryptography`` private key object, or bytes for an ``oct`` (HMAC) JWK.
    """
    if isinstance(source, Mapping):
        if "keys" in source:
            raise ConfigurationError(
                f"{PLUGIN}: load_key was given a JWKS; use load_signers for several keys"
            )
        return jwk_to_key(source)
    if isinstance(source, bytes):
        data, where = source, "given inline"
    elif isinstance(source, str) and source.lstrip().startswith(("-----BEGIN", "{")):
        data, where = source.encode("utf-8"), "given inline"
    elif isinstance(source, str | os.PathLike):
        data = read_secret_file(source, setting="key", plugin=ENTRY_POINT)
        where = f"in file {os.fspath(source)!r}"
    else:
        raise ConfigurationError(
            f"{PLUGIN}: a key source must be a path, PEM bytes or a JWK dict, "
            f"not {type(source).__name__}"
        )
    parsed = parse_key_data(data, where, passphrase)
    if isinstance(parsed, dict):
        if "keys" in parsed:
            raise ConfigurationError(
                f"{PLUGIN}: the key {where} is a JWKS; use load_signers for several keys"
            )
        return jwk_to_key(parsed, where)
    return parsed


def public_jwk_of(key: PrivateKey) -> dict[str, str]:
    """The public JWK members of ``key`` (kty and key parameters only)."""
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _int_to_b64(rsa_numbers.n), "e": _int_to_b64(rsa_numbers.e)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_numbers = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": CURVE_NAMES[key.curve.name],
            "x": _int_to_b64(ec_numbers.x, size),
            "y": _int_to_b64(ec_numbers.y, size),
        }
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw).decode("ascii")}


_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def thumbprint(public_jwk: Mapping[str, str]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url."""
    members = {name: public_jwk[name] for name in _THUMBPRINT_MEMBERS[public_jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b64url_encode(hashlib.sha256(canonical).digest()).decode("ascii")
