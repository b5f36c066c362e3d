"""The DPoP settings (``dpop``, ``dpop_key``, ``dpop_key_passphrase``, ``dpop_algorithm``),
validated when the plugin is configured: the key is loaded or generated here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asapp_auth.plugins import SettingsProblems

from ._dpop import ALGORITHMS, DPoPKey
from ._pem_key import load_private_key
from ._setting_checks import fail

__all__ = ["DPOP_SETTINGS", "parse_dpop"]

DPOP_SETTINGS = frozenset({"dpop", "dpop_key", "dpop_key_passphrase", "dpop_algorithm"})


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
    private_key = load_private_key(raw, "dpop_key")
    try:
        return DPoPKey(private_key)
    except TypeError as exc:
        raise fail(
            "dpop_key", f"is {exc}; DPoP here signs with EC P-256 (ES256) or Ed25519 (EdDSA)"
        ) from None
