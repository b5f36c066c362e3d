"""The DPoP settings (``dpop``, ``dpop_key``, ``dpop_key_passphrase``, ``dpop_algorithm``),
validated when the plugin is configured: the key is loaded or generated here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from asapp_auth.errors import ConfigurationError
from asapp_auth.plugins import SettingsProblems
from asapp_auth.secrets import read_secret_file, resolve_secret

from ._dpop import ALGORITHMS, DPoPKey

__all__ = ["DPOP_SETTINGS", "parse_dpop"]

DPOP_SETTINGS = frozenset({"dpop", "dpop_key", "dpop_key_passphrase", "dpop_algorithm"})
PLUGIN = "oauth2"


def _fail(name: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"plugin {PLUGIN!r}: setting {name!r} {problem}")


def parse_dpop(raw: Mapping[str, Any], problems: SettingsProblems) -> DPoPKey | None:
    """The client's DPoP key when ``dpop`` is on (loaded from ``dpop_key``, else generated in
    memory for ``dpop_algorithm``); ``None`` when off. Problems go to ``problems``."""
    on = raw.get("dpop", False)
    if not isinstance(on, bool):
        problems.add("dpop", f"setting 'dpop' must be true or false, got {type(on).__name__}")
    algorithm = raw.get("dpop_algorithm")
    if algorithm is not None and algorithm not in ALGORITHMS:
        problems.add(
            "dpop_algorithm",
            f"setting 'dpop_algorithm' must be one of {list(ALGORITHMS)}, got {algorithm!r}",
        )
    if problems.failed("dpop", "dpop_algorithm"):
        return None
    if not on:
        for name in ("dpop_key", "dpop_key_passphrase", "dpop_algorithm"):
            if raw.get(name) is not None:
                problems.add(
                    name, f"setting {name!r} applies only with dpop = true; set dpop or remove it"
                )
        return None
    if raw.get("dpop_key") is None:
        if raw.get("dpop_key_passphrase") is not None:
            problems.add(
                "dpop_key_passphrase",
                "setting 'dpop_key_passphrase' was given without 'dpop_key'; remove it",
            )
            return None
        return DPoPKey.generate(algorithm or "ES256")
    key = problems.check("dpop_key", _load, raw)
    if key is not None and algorithm is not None and key.algorithm != algorithm:
        problems.add(
            "dpop_algorithm",
            f"setting 'dpop_algorithm' is {algorithm!r}, but 'dpop_key' is a key for "
            f"{key.algorithm}; remove dpop_algorithm or give a key of that kind",
        )
        return None
    return key


def _load(raw: Mapping[str, Any]) -> DPoPKey:
    key = raw["dpop_key"]
    if isinstance(key, bytes):
        pem = key
    elif isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        pem = key.encode()  # inline PEM text: never shown, unlike a path
    elif isinstance(key, str) and key.startswith("env:"):
        pem = resolve_secret(key, setting="dpop_key", plugin=PLUGIN).encode()
    elif isinstance(key, str) and key:
        pem = read_secret_file(key.removeprefix("file:"), setting="dpop_key", plugin=PLUGIN)
    else:
        raise _fail("dpop_key", "must be a PEM path, 'file:PATH', 'env:NAME', or PEM text or bytes")
    raw_passphrase = raw.get("dpop_key_passphrase")
    passphrase = None
    if raw_passphrase is not None:
        passphrase = resolve_secret(
            raw_passphrase, setting="dpop_key_passphrase", plugin=PLUGIN
        ).encode()
    if b"PRIVATE KEY-----" not in pem:
        raise _fail("dpop_key", "is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
    try:
        private_key = serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise _fail(
                "dpop_key", "is an encrypted PEM key; give its passphrase in 'dpop_key_passphrase'"
            ) from None
        raise _fail(
            "dpop_key_passphrase", "was given, but 'dpop_key' is not encrypted; remove it"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise _fail(
            "dpop_key",
            "could not be loaded: not a valid PEM private key, or a wrong passphrase",
        ) from None
    try:
        return DPoPKey(private_key)
    except TypeError as exc:
        raise _fail(
            "dpop_key", f"is {exc}; DPoP here signs with EC P-256 (ES256) or Ed25519 (EdDSA)"
        ) from None
