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
