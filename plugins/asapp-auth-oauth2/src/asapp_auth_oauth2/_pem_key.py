"""A PEM private key that a setting names (``signing_key``, ``dpop_key``): a path, ``file:PATH``,
``env:NAME``, or PEM text or bytes, decrypted with the passphrase of ``<setting>_passphrase``
(``env:NAME``, ``file:PATH``, ``literal:``). Loaded when the plugin is configured, each failure a
``ConfigurationError`` naming the setting at fault; the key's text is never shown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from asapp_auth.secrets import read_secret_file, resolve_secret

from ._setting_checks import PLUGIN, fail

__all__ = ["load_private_key"]


def load_private_key(raw: Mapping[str, Any], name: str) -> Any:
    """The private key of setting ``name`` in ``raw`` (not ``None``), with its passphrase."""
    passphrase_name = f"{name}_passphrase"
    key = raw[name]
    if isinstance(key, bytes):
        pem = key
    elif isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        pem = key.encode()  # inline PEM text: never shown, unlike a path
    elif isinstance(key, str) and key.startswith("env:"):
        pem = resolve_secret(key, setting=name, plugin=PLUGIN).encode()
    elif isinstance(key, str) and key:
        pem = read_secret_file(key.removeprefix("file:"), setting=name, plugin=PLUGIN)
    else:
        raise fail(name, "must be a PEM path, 'file:PATH', 'env:NAME', or PEM text or bytes")
    raw_passphrase = raw.get(passphrase_name)
    passphrase = None
    if raw_passphrase is not None:
        passphrase = resolve_secret(raw_passphrase, setting=passphrase_name, plugin=PLUGIN).encode()
    if b"PRIVATE KEY-----" not in pem:
        raise fail(
            name,
            "is not a PEM private key (-----BEGIN ... PRIVATE KEY-----); a public key or "
            "certificate cannot sign",
        )
    try:
        return serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise fail(
                name,
                f"is an encrypted PEM key; give its passphrase in {passphrase_name!r} (env:NAME "
                "or file:PATH)",
            ) from None
        raise fail(
            passphrase_name, f"was given, but {name!r} is not encrypted; remove it"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if passphrase is not None:
            raise fail(
                passphrase_name,
                f"does not decrypt {name!r} (wrong passphrase, or the key is damaged)",
            ) from None
        raise fail(name, "could not be loaded: it is not a valid PEM private key") from None
