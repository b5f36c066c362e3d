"""The one place where this plugin turns a setting into a secret: ``env:NAME``, ``file:PATH``
or a literal. Errors name the setting and the variable or file, never the value."""

from __future__ import annotations

import os
from pathlib import Path

from asapp_auth.errors import ConfigurationError

__all__ = ["PLUGIN", "read_env", "read_file", "resolve_secret"]

PLUGIN = "asapp-auth-jwt"


def read_env(name: str, setting: str) -> str:
    """The value of environment variable ``name``; missing or empty is a configuration error."""
    value = os.environ.get(name)
    if not value:
        state = "is not set" if value is None else "is empty"
        raise ConfigurationError(
            f"{PLUGIN}: setting {setting!r} names environment variable {name!r}, which {state}; "
            "set it before the pipeline is configured"
        )
    return value


def read_file(path: str | os.PathLike[str], setting: str) -> bytes:
    """The bytes of the file at ``path``; unreadable or empty is a configuration error."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{PLUGIN}: setting {setting!r}: file {os.fspath(path)!r} cannot be read "
            f"({type(exc).__name__}: {exc.strerror or 'unreadable'}); check the path and its "
            "permissions"
        ) from None
    if not data.strip():
        raise ConfigurationError(
            f"{PLUGIN}: setting {setting!r}: file {os.fspath(path)!r} is empty; "
            "write the secret into it"
        )
    return data


def resolve_secret(value: object, setting: str) -> str:
    """Resolve ``env:NAME`` and ``file:PATH`` references; any other str is the secret itself.

    A file's trailing newline is dropped, as secrets mounted from files often end with one.
    """
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"{PLUGIN}: setting {setting!r} must be a non-empty str (a literal, 'env:NAME' or "
            f"'file:PATH'), not {type(value).__name__}"
        )
    if value.startswith("env:"):
        return read_env(value[4:], setting)
    if value.startswith("file:"):
        raw = read_file(value[5:], setting)
        try:
            return raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"{PLUGIN}: setting {setting!r}: file {value[5:]!r} is not UTF-8 text"
            ) from None
    return value
