"""Secret values: references resolved once at configuration time, and a wrapper that never shows.

A setting that holds a secret may be given as the value itself, as ``"env:NAME"`` (the
environment variable ``NAME``) or as ``"file:PATH"`` (the file's content, one trailing newline
removed). ``"literal:VALUE"`` gives a value that itself starts with ``env:`` or ``file:``.
"""

from __future__ import annotations

import os
from pathlib import Path

from asapp_auth.errors import ConfigurationError

__all__ = ["Secret", "resolve_secret"]


class Secret:
    """A secret string. ``repr``/``str`` never show it; ``reveal()`` does, where it is sent."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def resolve_secret(name: str, value: object, *, plugin: str = "oauth2") -> Secret:
    """Resolve the setting ``name`` to a ``Secret``, reading ``env:``/``file:`` references now."""
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"plugin {plugin!r}: setting {name!r} must be a non-empty str (the value, "
            f"'env:NAME' or 'file:PATH'), not {type(value).__name__}"
        )
    kind, sep, rest = value.partition(":")
    if not sep or kind not in ("env", "file", "literal"):
        return Secret(value)
    if kind == "literal":
        resolved: str | None = rest
    elif kind == "env":
        resolved = os.environ.get(rest)
        if resolved is None:
            raise ConfigurationError(
                f"plugin {plugin!r}: setting {name!r} refers to the environment variable "
                f"{rest!r}, which is not set; set it, or give the value another way"
            )
    else:
        try:
            resolved = Path(rest).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"plugin {plugin!r}: setting {name!r} refers to the file {rest!r}, which "
                f"cannot be read ({type(exc).__name__}); check the path and its permissions"
            ) from None
        resolved = resolved.removesuffix("\n").removesuffix("\r")
    if not resolved:
        raise ConfigurationError(
            f"plugin {plugin!r}: setting {name!r} resolved to an empty value; give a secret"
        )
    return Secret(resolved)
