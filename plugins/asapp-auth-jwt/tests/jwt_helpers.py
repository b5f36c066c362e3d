"""Keys for every algorithm and two independent verifiers (PyJWT, joserfc), for the tests."""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
from asapp_auth_jwt import Signer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws as joserfc_jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet, OctKey

# Secrets made once per session (keys); the guard of every test looks for them.
SESSION_SECRETS: set[str] = set()


def _remember_key(key: Any) -> None:
    if isinstance(key, bytes):
        SESSION_SECRETS.update({key.hex(), key.decode("latin-1")})
        return
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    SESSION_SECRETS.update(line for line in pem.splitlines() if "-----" not in line)


_KEYS: dict[str, Any] = {}


def key_for(algorithm: str) -> Any:
    """A private key (or HMAC secret) fit for ``algorithm``, made once per session."""
    kind = {
        "RS": "rsa", "PS": "rsa", "ES": algorithm, "Ed": "ed25519", "HS": algorithm,
    }[algorithm[:2]]  # fmt: skip
    if kind not in _KEYS:
        if kind == "rsa":
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == "ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        elif kind.startswith("ES"):
            curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}[kind]
            key = ec.generate_private_key(curve())
        else:
            key = secrets.token_bytes(int(kind[2:]) // 8)
        _remember_key(key)
        _KEYS[kind] = key
    return _KEYS[kind]


def public_of(signer: Signer) -> Any:
    """What a verifier needs: the public key, or the secret for HMAC."""
    return signer._key if signer.is_symmetric else signer.public_key()


def verify_pyjwt(token: str, signer: Signer, **options: Any) -> dict[str, Any]:
    """Claims of ``token`` verified by PyJWT (signature, and exp/nbf/iat when present)."""
    return pyjwt.decode(
        token,
        public_of(signer),
        algorithms=[signer.algorithm],
        options={"verify_aud": False, **options},
    )


def verify_joserfc(token: str, signer: Signer) -> dict[str, Any]:
    """Claims of ``token`` verified by joserfc's JWS layer, with the key imported from a JWK."""
    if signer.is_symmetric:
        key: Any = OctKey.import_key(signer._key)
    else:
        key = KeySet.import_key_set({"keys": [signer.public_jwk()]})
    with warnings.catch_warnings():
        # joserfc warns that RFC 9864 deprecates the name "EdDSA" (for "Ed25519"); the name is
        # still what RFC 8037 and the issue specify.
        warnings.simplefilter("ignore", SecurityWarning)
        obj = joserfc_jws.deserialize_compact(token, key, algorithms=[signer.algorithm])
    payload: dict[str, Any] = json.loads(obj.payload)
    return payload


def private_jwk(key: Any) -> dict[str, Any]:
    """The private JWK of ``key``, written by joserfc (not by the code under test)."""
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    if isinstance(key, bytes):
        return dict(OctKey.import_key(key).as_dict(private=True))
    cls: Any = OKPKey
    if isinstance(key, rsa.RSAPrivateKey):
        cls = RSAKey
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        cls = ECKey
    return dict(cls.import_key(key).as_dict(private=True))


@dataclass
class JwksServer:
    """A platform stand-in on 127.0.0.1 that accepts a Bearer JWT signed by a key of its JWKS.

    It checks exp and nbf against ``now()`` (settable, for expiry tests), and iss/aud when set.
    Answers 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` otherwise.
    """

    jwks: dict[str, Any]
    now: Callable[[], float]
    issuer: str | None = None
    audience: str | None = None
    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    seen_tokens: list[str] = field(default_factory=list)

    def verify(self, token: str) -> dict[str, Any]:
        header = pyjwt.get_unverified_header(token)
        keys = {k["kid"]: k for k in self.jwks["keys"]}
        jwk = keys.get(header.get("kid"))
        if jwk is None:
            raise pyjwt.InvalidTokenError("unknown kid")
        key = pyjwt.PyJWK.from_dict(jwk)
        claims = pyjwt.decode(
            token,
            key,
            algorithms=[jwk["alg"]],
            audience=self.audience,
            issuer=self.issuer,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["exp", "nbf", "iat", "sub", "jti"]},
        )  # fmt: skip
        now = self.now()
        if claims["exp"] <= now:
            raise pyjwt.ExpiredSignatureError("expired")
        if claims["nbf"] > now + 5:
            raise pyjwt.ImmatureSignatureError("not yet valid")
        return claims
