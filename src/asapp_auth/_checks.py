"""Checks of settings given in code, shared by the pipeline and the cache backends."""

from __future__ import annotations

import math

from .errors import ConfigurationError


def seconds(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite number of seconds, at least 0 (above 0 when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigurationError(
            f"{name} must be {'above' if positive else 'at least'} 0, not {value!r}"
        )
    return float(value)


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_url_problem(url: object) -> str | None:
    """What is wrong with ``url`` as a Redis URL, quoting at most its scheme (the rest may hold
    a password); ``None`` when it has a Redis scheme."""
    expected = "redis://HOST:PORT/DB, rediss://... (TLS) or unix:///PATH"
    if not isinstance(url, str):
        return f"must be a Redis URL such as {expected}, not {type(url).__name__}"
    if url.startswith(_REDIS_SCHEMES):
        return None
    scheme, found, _ = url.partition("://")
    if not found:
        return f"has no scheme: write it as {expected}"
    return f"has scheme {scheme[:20] + '://'!r}, which is not Redis's: write it as {expected}"
