"""Keys for every algorithm and two independent verifiers (PyJWT, joserfc), for the tests."""

from __future__ import annotations

import json
import secrets
from typing import Any

import jwt as pyjwt
from asapp_auth_jwt import Signer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws as joserfc_jws
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
    obj = joserfc_jws.deserialize_compact(token, key, algorithms=[signer.algorithm])
    payload: dict[str, Any] = json.loads(obj.payload)
    return payload
