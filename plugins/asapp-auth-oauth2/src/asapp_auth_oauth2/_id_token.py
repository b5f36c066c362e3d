"""ID token validation (OpenID Connect Core 1.0, sections 3.1.3.7 and 3.1.3.8).

The signature is checked with a key from the issuer's JWKS, by an algorithm the settings allow
(never ``none``, never an HMAC one: those would let a public key serve as a shared secret), then
``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nbf``, ``nonce`` and ``at_hash``. Failures raise
``IDTokenError`` naming the check and the endpoint; no message quotes the token, the nonce or a
claim that identifies the customer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from .errors import IDTokenError

__all__ = ["ALGORITHMS", "JWKS", "validate_id_token"]

# alg -> (key type, hash). EdDSA is Ed25519 here; its at_hash uses SHA-512 (OpenID errata).
_ALGORITHMS: dict[str, tuple[str, Callable[[], hashes.HashAlgorithm]]] = {
    "RS256": ("RSA", hashes.SHA256),
    "RS384": ("RSA", hashes.SHA384),
    "RS512": ("RSA", hashes.SHA512),
    "PS256": ("RSA", hashes.SHA256),
    "PS384": ("RSA", hashes.SHA384),
    "PS512": ("RSA", hashes.SHA512),
    "ES256": ("EC", hashes.SHA256),
    "ES384": ("EC", hashes.SHA384),
    "ES512": ("EC", hashes.SHA512),
    "EdDSA": ("OKP", hashes.SHA512),
}
ALGORITHMS = tuple(_ALGORITHMS)
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CURVE_OF = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_MAX_TOKEN = 64 * 1024
_MAX_KEYS = 100
_MIN_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _b64(part: str) -> bytes:
    if not part or any(c in part for c in "=+/"):
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _uint(value: object) -> int:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return int.from_bytes(_b64(value), "big")


def _public_key(jwk: Mapping[str, Any]) -> tuple[str, PublicKey] | None:
    """``(kty, key)`` for a JWK that may verify signatures; ``None`` for any other."""
    if jwk.get("use") not in (None, "sig"):
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            rsa_key = rsa.RSAPublicNumbers(_uint(jwk.get("e")), _uint(jwk.get("n"))).public_key()
            return None if rsa_key.key_size < _MIN_RSA_BITS else (kty, rsa_key)
        if kty == "EC":
            curve = _CURVES.get(str(jwk.get("crv")))
            if curve is None:
                return None
            numbers = ec.EllipticCurvePublicNumbers(_uint(jwk.get("x")), _uint(jwk.get("y")), curve)
            return kty, numbers.public_key()
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            x = jwk.get("x")
            if not isinstance(x, str):
                return None
            return kty, ed25519.Ed25519PublicKey.from_public_bytes(_b64(x))
    except (ValueError, TypeError, binascii.Error):
        return None
    return None


class JWKS:
    """The issuer's signing keys: fetched from its ``jwks_uri`` when first needed, again when a
    token names a key not among them (the issuer rotated its keys) at most once per
    ``min_refetch`` seconds, and again once ``max_age`` old (a key it withdrew is not trusted for
    ever)."""

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, Any]],
        *,
        clock: Callable[[], float] = time.monotonic,
        min_refetch: float = 60.0,
        max_age: float = 3600.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._min_refetch = min_refetch
        self._max_age = max_age
        self._lock = threading.Lock()
        self._keys: list[tuple[Mapping[str, Any], str, PublicKey]] | None = None
        self._fetched_at = -math.inf
        self.fetches = 0

    def _load(self) -> None:
        document = self._fetch()
        self.fetches += 1
        self._fetched_at = self._clock()
        raw = document.get("keys")
        keys: list[tuple[Mapping[str, Any], str, PublicKey]] = []
        if isinstance(raw, list):
            for jwk in raw[:_MAX_KEYS]:
                if isinstance(jwk, Mapping) and (found := _public_key(jwk)) is not None:
                    keys.append((jwk, *found))
        self._keys = keys

    def candidates(self, kid: str | None, alg: str) -> list[PublicKey]:
        """The keys that may have signed a token with this ``kid`` header and ``alg``."""
        with self._lock:
            if self._keys is None or self._clock() - self._fetched_at >= self._max_age:
                self._load()
            found = self._match(kid, alg)
            if not found and self._clock() - self._fetched_at >= self._min_refetch:
                self._load()
                found = self._match(kid, alg)
            return found

    def _match(self, kid: str | None, alg: str) -> list[PublicKey]:
        kty = _ALGORITHMS[alg][0]
        found = []
        for jwk, key_type, key in self._keys or ():
            if key_type != kty or jwk.get("alg") not in (None, alg):
                continue
            if kid is not None and jwk.get("kid") != kid:
                continue
            if alg in _CURVE_OF and jwk.get("crv") != _CURVE_OF[alg]:
                continue
            found.append(key)
        return found


def _verify(alg: str, key: PublicKey, message: bytes, signature: bytes) -> bool:
    digest = _ALGORITHMS[alg][1]()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg.startswith("RS")
                else padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            )
            key.verify(signature, message, pad, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            key.verify(utils.encode_dss_signature(r, s), message, ec.ECDSA(digest))
        else:
            key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _half_hash(alg: str, value: str) -> str:
    digest = hashlib.new(_ALGORITHMS[alg][1]().name, value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def validate_id_token(
    token: object,
    *,
    jwks: JWKS,
    issuer: str,
    client_id: str,
    nonce: str | None,
    algorithms: tuple[str, ...],
    leeway: float,
    max_age: float,
    access_token: str | None,
    endpoint: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` once every check passed; else ``IDTokenError``.

    ``nonce`` is the one sent in the authorization request (``None`` when none was: the device
    flow has no such request). ``endpoint`` is the token endpoint that returned the token.
    """

    def fail(check: str, problem: str) -> IDTokenError:
        return IDTokenError(
            f"plugin 'oauth2': the ID token from the token endpoint {endpoint} was refused: "
            f"{problem}; nothing was kept and no customer was set",
            endpoint=endpoint,
            check=check,
        )

    if not isinstance(token, str) or not token:
        raise fail("id_token", "the token response holds no id_token (scope has 'openid')")
    if len(token) > _MAX_TOKEN:
        raise fail("id_token", f"it is longer than {_MAX_TOKEN} characters")
    parts = token.split(".")
    if len(parts) != 3:
        what = "an encrypted JWE" if len(parts) == 5 else "no JWS compact serialization"
        raise fail("id_token", f"it is {what}")
    try:
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
        signature = _b64(parts[2]) if parts[2] else b""
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise fail("id_token", "its parts are not base64url-encoded JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise fail("id_token", "its header or claims are not JSON objects")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise fail("alg", "it is unsigned (alg 'none'); only signed ID tokens are accepted")
    if alg not in algorithms or alg not in _ALGORITHMS:
        raise fail(
            "alg",
            f"it is signed with {alg[:16]!r}, not one of id_token_algorithms {list(algorithms)}",
        )
    if "crit" in header:
        raise fail("crit", "it has critical header parameters this client does not understand")
    typ = header.get("typ")
    if typ is not None and (
        not isinstance(typ, str) or typ.lower() not in ("jwt", "application/jwt")
    ):
        raise fail("typ", f"its typ is {str(typ)[:32]!r}, not JWT: it is another kind of token")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise fail("kid", "its kid is not a string")
    keys = jwks.candidates(kid, alg)
    if not keys:
        raise fail(
            "signature",
            f"the issuer's JWKS has no {alg} key" + (f" with kid {kid[:64]!r}" if kid else ""),
        )
    message = f"{parts[0]}.{parts[1]}".encode("ascii")
    if not any(_verify(alg, key, message, signature) for key in keys):
        raise fail("signature", "its signature does not verify with the issuer's keys")

    if claims.get("iss") != issuer:
        shown = claims.get("iss")
        raise fail("iss", f"it was issued by {str(shown)[:200]!r}, not by {issuer!r}")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or client_id not in audiences:
        raise fail("aud", f"its audience does not include this client ({client_id!r})")
    others = [a for a in audiences if a != client_id]
    if others:
        raise fail(
            "aud", f"its audience also names {len(others)} other client(s), not trusted here"
        )
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise fail("azp", f"it was issued to another authorized party, not {client_id!r}")
    wall = time.time() if now is None else now
    for name in ("exp", "iat"):
        value = claims.get(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise fail(name, f"its {name} claim is missing or not a number")
    if wall >= claims["exp"] + leeway:
        raise fail("exp", "it has expired")
    if claims["iat"] > wall + leeway:
        raise fail("iat", "it was issued in the future (check the clocks)")
    if wall - claims["iat"] > max_age + leeway:
        raise fail("iat", f"it was issued more than {max_age:g} s ago (id_token_max_age)")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or nbf > wall + leeway):
        raise fail("nbf", "it is not valid yet")
    if nonce is not None:
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise fail("nonce", "its nonce is not the one this login sent (a replayed token?)")
    at_hash = claims.get("at_hash")
    if (
        at_hash is not None
        and access_token is not None
        and (
            not isinstance(at_hash, str)
            or not hmac.compare_digest(at_hash.encode(), _half_hash(alg, access_token).encode())
        )
    ):
        raise fail("at_hash", "its at_hash does not match the access token it came with")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise fail("sub", "its sub claim is missing or empty")
    return claims
