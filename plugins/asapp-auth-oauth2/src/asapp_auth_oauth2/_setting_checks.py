"""The one wording of a refused OAuth2 setting (``plugin 'oauth2': setting 'name' <problem>``),
and the checks of plain values that every settings module uses: str, number, int, bool, a list
of str."""

from __future__ import annotations

import importlib
import ipaddress
import math
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from asapp_auth.errors import ConfigurationError

__all__ = [
    "PLUGIN",
    "bool_setting",
    "callable_setting",
    "check_url",
    "fail",
    "int_setting",
    "number_setting",
    "str_setting",
    "strings_setting",
]

PLUGIN = "oauth2"


def fail(name: str, problem: str) -> ConfigurationError:
    """The error for setting ``name``; ``problem`` goes on the sentence (``"must be ..."``)."""
    return ConfigurationError(f"plugin {PLUGIN!r}: setting {name!r} {problem}")


def str_setting(name: str, value: object, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if value is None:
        raise fail(name, "is missing; it is required")
    if not isinstance(value, str) or not value.strip():
        raise fail(name, f"must be a non-empty str, not {type(value).__name__}")
    return value.strip()


def number_setting(name: str, value: object, *, minimum: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(name, f"must be a finite number, not {type(value).__name__}")
    if value < minimum or (value == minimum and not allow_zero and minimum == 0):
        floor = f">= {minimum}" if allow_zero or minimum else "> 0"
        raise fail(name, f"must be {floor}, got {value!r}")
    return float(value)


def int_setting(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(name, f"must be an int >= {minimum}, got {value!r}")
    return value


def bool_setting(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise fail(name, f"must be true or false, not {type(value).__name__}")
    return value


def strings_setting(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split() if isinstance(value, str) else value
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise fail(name, "must be a str or a list of str")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item or any(c.isspace() for c in item):
            raise fail(name, "must hold non-empty str values without whitespace")
        if item not in out:
            out.append(item)
    return tuple(out)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(name: str, url: object, *, allow_http: bool) -> str:
    """Validate an endpoint URL: absolute, https (or http on loopback or with ``allow_http``)."""
    text = str_setting(name, url, required=True)
    assert text is not None
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise fail(name, f"must be an absolute https URL, got {text!r}")
    if parts.username or parts.password:
        raise fail(name, "must not hold a user name or password; use client_id and client_secret")
    if parts.fragment:
        raise fail(name, "must not hold a fragment")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise fail(
            name,
            "uses http, which would send credentials in clear; use https "
            "(http is accepted for loopback hosts, or with allow_http=true)",
        )
    return text


def callable_setting(name: str, value: object) -> Callable[..., Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        module_name, _, attr = value.partition(":")
        if not module_name or not attr:
            raise fail(name, "must be a callable or a 'module:attribute' reference")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise fail(name, f"refers to {value!r}, which cannot be imported ({exc})") from None
        value = target
    if not callable(value):
        raise fail(name, f"must be callable, not {type(value).__name__}")
    return value
