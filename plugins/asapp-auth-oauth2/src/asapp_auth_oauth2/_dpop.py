"""DPoP (RFC 9449): the client's proof-of-possession key, the proofs it signs, the servers'
nonces, and the two request-path hooks that put a proof on each resource request.

A proof is made for every request and never cached; what does not change between proofs (the
protected header with the public JWK, the signing function) is serialized once per key, so a
proof costs one JSON dump of a small payload and one signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from asapp_auth import AuthContext, Verdict, hookimpl

from .errors import OAuth2Error

__all__ = ["ALGORITHMS", "DPoP", "DPoPHooks", "DPoPKey", "dpop_error", "dpop_token", "origin_of"]

ALGORITHMS = ("ES256", "EdDSA")
"""The proof algorithms: ES256 with an EC P-256 key, EdDSA with an Ed25519 key."""

# How many servers' nonces are remembered; the oldest goes first past that.
_MAX_NONCES = 1_000
_DPOP_ERROR = re.compile(r'error\s*=\s*(?:"([^"]*)"|([^\s,]+))', re.IGNORECASE)
_NONCE_CHARS = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,512}$")  # RFC 9449 §8.1 NQCHAR


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_uint(value: int, size: int) -> str:
    return _b64(value.to_bytes(size, "big"))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased: the key of a server's nonce."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class DPoPKey:
    """A DPoP private key (EC P-256 or Ed25519) with its public JWK, its RFC 7638 thumbprint
    (``jkt``, what a server binds tokens to) and the serialized protected header of its proofs.

    ``repr`` shows the algorithm and thumbprint only: both are public.
    """

    __slots__ = ("_header", "_key", "_sign", "algorithm", "jkt", "jwk")

    def __init__(self, private_key: Any) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            if not isinstance(private_key.curve, ec.SECP256R1):
                raise TypeError(f"an EC key on {private_key.curve.name}, not P-256")
            numbers = private_key.public_key().public_numbers()
            self.jwk: dict[str, str] = {
                "crv": "P-256",
                "kty": "EC",
                "x": _b64_uint(numbers.x, 32),
                "y": _b64_uint(numbers.y, 32),
            }
            self.algorithm = "ES256"
            signature = ec.ECDSA(hashes.SHA256())

            def sign(data: bytes) -> bytes:
                r, s = decode_dss_signature(private_key.sign(data, signature))
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            raw = private_key.public_key().public_bytes_raw()
            self.jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
            self.algorithm = "EdDSA"
            sign = private_key.sign
        else:
            raise TypeError(f"a {type(private_key).__name__}, not an EC P-256 or Ed25519 key")
        self._key = private_key
        self._sign: Callable[[bytes], bytes] = sign
        # RFC 7638: the required members, in lexicographic order, without white space.
        canonical = json.dumps(self.jwk, separators=(",", ":"), sort_keys=True)
        self.jkt = _b64(hashlib.sha256(canonical.encode("ascii")).digest())
        header = {"typ": "dpop+jwt", "alg": self.algorithm, "jwk": self.jwk}
        self._header = _b64(json.dumps(header, separators=(",", ":")).encode("ascii")) + "."

    @classmethod
    def generate(cls, algorithm: str = "ES256") -> DPoPKey:
        """A new key, held in memory only, for ``algorithm`` (one of ``ALGORITHMS``)."""
        if algorithm == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def proof(
        self, htm: str, htu: str, *, access_token: str | None = None, nonce: str | None = None
    ) -> str:
        """A new proof JWT for one request: ``htm`` and ``htu`` (the URL without query or
        fragment), ``iat`` now, a random ``jti``, with ``ath`` for ``access_token`` and the
        server's ``nonce`` when given."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = _b64(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = self._header + _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{signing_input}.{_b64(self._sign(signing_input.encode('ascii')))}"

    def __repr__(self) -> str:
        return f"DPoPKey(algorithm={self.algorithm!r}, jkt={self.jkt!r})"


class DPoP:
    """A client's DPoP key and the latest nonce each server (origin) gave it."""

    def __init__(self, key: DPoPKey) -> None:
        self.key = key
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def nonce(self, origin: str) -> str | None:
        """The latest nonce from the server at ``origin``, if it gave one."""
        return self._nonces.get(origin)

    def remember(self, origin: str, headers: Mapping[str, str]) -> bool:
        """Keep the ``DPoP-Nonce`` of a server's answer, if it has a valid one; say so."""
        nonce = headers.get("dpop-nonce")
        if not nonce or not _NONCE_CHARS.match(nonce):
            return False
        with self._lock:
            self._nonces.pop(origin, None)
            self._nonces[origin] = nonce
            while len(self._nonces) > _MAX_NONCES:
                del self._nonces[next(iter(self._nonces))]
        return True

    def proof(self, htm: str, htu: str, access_token: str | None = None) -> str:
        """A proof for one request to ``htu``, with that server's latest nonce."""
        return self.key.proof(
            htm, htu, access_token=access_token, nonce=self._nonces.get(origin_of(htu))
        )

    def token_request(self, url: str, send: Callable[..., Any]) -> Any:
        """``send(fresh_headers=..., seen=...)`` to the token endpoint ``url`` with a new proof
        per attempt; on ``use_dpop_nonce`` with a nonce in the answer, once more with it."""
        origin = origin_of(url)
        got_nonce = False

        def fresh_headers() -> dict[str, str]:
            return {"DPoP": self.proof("POST", url)}

        def seen(headers: Mapping[str, str]) -> None:
            nonlocal got_nonce
            got_nonce = self.remember(origin, headers) or got_nonce

        try:
            return send(fresh_headers=fresh_headers, seen=seen)
        except OAuth2Error as exc:
            # RFC 9449 §8: the server refused the request before acting on it, so even a
            # rotating refresh token may be sent again.
            if exc.error != "use_dpop_nonce" or not got_nonce:
                raise
        return send(fresh_headers=fresh_headers, seen=seen)


def dpop_token(context: AuthContext) -> str | None:
    """The access token of a context this plugin made for a DPoP-bound token, else ``None``."""
    auth = context.get("Auth")
    headers = auth.get("Headers") if auth is not None else None
    value = headers.get("Authorization") if headers is not None else None
    if isinstance(value, str) and value.startswith("DPoP "):
        return value[5:]
    return None


def dpop_error(headers: Mapping[str, Any]) -> str | None:
    """The ``error`` of a DPoP ``WWW-Authenticate`` challenge, ``""`` for one without, or
    ``None`` when no challenge is DPoP's."""
    getlist = getattr(headers, "get_list", None) or getattr(headers, "getall", None)
    if getlist is not None:
        challenges = list(getlist("www-authenticate", []) or [])
    else:
        value = headers.get("www-authenticate")
        challenges = [] if value is None else [value]
    for value in challenges:
        # Several challenges may share one header line: look from each "DPoP" scheme name on.
        for found in re.finditer(r"(?:^|,)\s*dpop(?:\s+|$)", value, re.IGNORECASE):
            rest = value[found.end() :]
            following = re.search(r",\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+\s+[^\s=,]+\s*=", rest)
            params = rest if following is None else rest[: following.start()]
            match = _DPOP_ERROR.search(params)
            if match is None:
                return ""
            return match.group(1) if match.group(1) is not None else match.group(2)
    return None


class DPoPHooks:
    """``request_proof`` and ``classify_response`` for DPoP-bound tokens: registered with the
    plugin only when ``dpop`` is on, so that other pipelines' request path looks for none."""

    def __init__(self, dpop: DPoP) -> None:
        self._dpop = dpop

    @hookimpl
    def request_proof(
        self, context: AuthContext, method: str, url: str
    ) -> Mapping[str, str] | None:
        """A ``DPoP`` header for a request carrying one of this plugin's DPoP-bound tokens."""
        token = dpop_token(context)
        if token is None:
            return None
        return {"DPoP": self._dpop.proof(method, url, token)}

    @hookimpl
    def classify_response(
        self, context: AuthContext | None, headers: Mapping[str, str], url: str
    ) -> Verdict | None:
        """A resource server's DPoP challenge: a new nonce means once more with it, an
        ``invalid_token`` a new token; anything else is for the default rules."""
        if context is None or dpop_token(context) is None:
            return None
        error = dpop_error(headers)
        if error == "use_dpop_nonce":
            if self._dpop.remember(origin_of(url), headers):
                return Verdict.RETRY
            return Verdict.OK  # no usable nonce to try with: the answer goes back as it is
        if error is not None:
            return Verdict.TOKEN_EXPIRED if error in ("", "invalid_token") else Verdict.OK
        return None
