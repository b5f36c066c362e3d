"""``client_secret_jwt`` (RFC 7523 section 2.2): client assertions MACed with the client secret.

HS256, HS384 and HS512 (RFC 7518 section 3.2), made with the standard library: the method needs no
key file and no optional dependency.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["HMAC_ALGORITHMS", "header_algorithm", "min_secret_bytes", "sign"]

HMAC_ALGORITHMS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


def min_secret_bytes(algorithm: str) -> int:
    """RFC 7518 section 3.2: a key at least as long as the hash output."""
    return int(algorithm[2:]) // 8


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(value), separators=(",", ":"), sort_keys=True).encode("utf-8")


def sign(claims: Mapping[str, Any], secret: str, algorithm: str) -> str:
    """The JWS compact serialisation of ``claims``, MACed with ``secret`` under ``algorithm``."""
    signing_input = _b64(_json({"alg": algorithm, "typ": "JWT"})) + "." + _b64(_json(claims))
    mac = hmac.digest(
        secret.encode("utf-8"), signing_input.encode("ascii"), HMAC_ALGORITHMS[algorithm]
    )
    return signing_input + "." + _b64(mac)


def header_algorithm(token: str) -> str | None:
    """The ``alg`` in a JWS compact string's header; ``None`` when it cannot be read."""
    encoded = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError):
        return None
    alg = header.get("alg") if isinstance(header, dict) else None
    return alg if isinstance(alg, str) else None
