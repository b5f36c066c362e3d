"""Contexts sealed for storage outside the process: AES-256-GCM under a ring of keys.

The first key of the ring seals; every key opens, so keys rotate without a flag day: put the new
key first, keep the old one until entries sealed with it have expired, then drop it. A sealed
value names its key by a short id (a hash of the key, not the key) and is bound to where it is
stored (the associated data): a value copied under another customer's name does not open.

Needs ``cryptography`` (the ``redis`` extra; from a checkout, ``pip install '.[redis]'``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable

from ._hints import extra_hint
from .errors import ConfigurationError
from .secrets import Secret, resolve_secret

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigurationError(
        f"encrypting cached contexts needs the cryptography package: {extra_hint('redis')}"
    ) from exc

__all__ = ["KeyRing", "UnsealError", "generate_key"]

_VERSION = b"\x01"
_ID_SIZE = 4
_NONCE_SIZE = 12
_KEY_SIZE = 32


class UnsealError(Exception):
    """A sealed value did not open: tampered with, truncated, or sealed with an unknown key."""


def generate_key() -> str:
    """A new random key, as the 43-character URL-safe base64 form the ring accepts."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_SIZE)).decode("ascii").rstrip("=")


def _decode_key(text: str, setting: str) -> bytes:
    text = text.strip()
    try:
        if len(text) == 2 * _KEY_SIZE and all(c in "0123456789abcdefABCDEF" for c in text):
            raw = bytes.fromhex(text)
        else:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != _KEY_SIZE:
        raise ConfigurationError(
            f"setting {setting!r} is not a 32-byte key in URL-safe base64 (43 or 44 characters) or "
            "hex (64 characters); make one with: asapp-auth keygen"
        )
    return raw


class KeyRing:
    """The keys that seal and open cached contexts; the first one seals.

    ``keys``: each a 32-byte key as ``bytes``, or a str in URL-safe base64 or hex, or an
    ``env:NAME`` / ``file:PATH`` reference to one (see ``asapp_auth.secrets``).
    """

    __slots__ = ("_aead", "_ids", "_sealer")

    def __init__(
        self, keys: Iterable[bytes | str | Secret], *, setting: str = "cache.keys"
    ) -> None:
        if isinstance(keys, str | bytes | Secret):
            keys = [keys]
        ring: list[bytes] = []
        for index, key in enumerate(keys):
            where = f"{setting}[{index}]"
            if isinstance(key, bytes):
                if len(key) != _KEY_SIZE:
                    raise ConfigurationError(f"setting {where!r} must be 32 bytes long")
                ring.append(key)
            else:
                ring.append(_decode_key(resolve_secret(key, setting=where), where))
        if not ring:
            raise ConfigurationError(
                f"setting {setting!r} needs at least one key; make one with: asapp-auth keygen"
            )
        self._ids = [hashlib.sha256(b"asapp-auth key id" + key).digest()[:_ID_SIZE] for key in ring]
        if len(set(self._ids)) != len(ring):
            raise ConfigurationError(f"setting {setting!r} names the same key twice")
        self._aead = {key_id: AESGCM(key) for key_id, key in zip(self._ids, ring, strict=True)}
        self._sealer = self._aead[self._ids[0]]

    def __len__(self) -> int:
        return len(self._ids)

    def seal(self, plaintext: bytes, bound_to: bytes) -> bytes:
        """``plaintext`` encrypted and authenticated with the first key, bound to ``bound_to``."""
        nonce = os.urandom(_NONCE_SIZE)
        header = _VERSION + self._ids[0]
        return header + nonce + self._sealer.encrypt(nonce, plaintext, header + bound_to)

    def open(self, sealed: bytes, bound_to: bytes) -> bytes:
        """The plaintext of a value ``seal`` made for the same ``bound_to``, or ``UnsealError``."""
        header = sealed[: 1 + _ID_SIZE]
        if len(sealed) < 1 + _ID_SIZE + _NONCE_SIZE + 16 or header[:1] != _VERSION:
            raise UnsealError("not a value sealed by asapp-auth")
        aead = self._aead.get(header[1:])
        if aead is None:
            raise UnsealError("sealed with a key that is not in this ring")
        nonce = sealed[1 + _ID_SIZE : 1 + _ID_SIZE + _NONCE_SIZE]
        try:
            return aead.decrypt(nonce, sealed[1 + _ID_SIZE + _NONCE_SIZE :], header + bound_to)
        except InvalidTag:
            raise UnsealError("failed authentication: tampered with, or stored elsewhere") from None

    def __repr__(self) -> str:
        return f"KeyRing(<{len(self)} key{'s' if len(self) > 1 else ''} redacted>)"
