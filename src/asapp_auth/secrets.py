"""Secrets in settings: references resolved once, at configuration time, and a wrapper that
never shows its value.

A setting that holds a secret is given in one of these forms:

- ``"env:NAME"``: the value of the environment variable ``NAME``;
- ``"file:PATH"``: the content of the file at ``PATH`` (``~`` expanded; a relative path is taken
  from the folder of the configuration file being applied, see ``asapp_auth.paths``), read as
  UTF-8, with one trailing newline (``\\n`` or ``\\r\\n``) removed, as files mounted as secrets
  often end with one;
- ``"literal:VALUE"``: ``VALUE`` itself, for a secret that starts with one of these prefixes;
- any other str: the secret itself;
- a ``Secret``: its value.

Every failure raises ``asapp_auth.errors.ConfigurationError`` when the reference is resolved,
never later. Its message names the plugin (when one is given), the setting, and the environment
variable or file path that is missing, unreadable or empty; it never holds the value, which is
described by its type at most. A value that is empty, or only whitespace, once resolved is an
error too.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigurationError, type_with_article
from .paths import setting_path

__all__ = ["Secret", "read_secret_file", "resolve_secret"]

_FORMS = "the secret, 'env:NAME', 'file:PATH' or 'literal:VALUE'"


class Secret:
    """A secret str. ``repr`` and ``str`` never show it; ``reveal()`` does, where it is sent."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret itself: call this only where it leaves the process (a header, a body)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def _setting(setting: str, plugin: str | None) -> str:
    return f"plugin {plugin!r}: setting {setting!r}" if plugin else f"setting {setting!r}"


def read_secret_file(
    path: str | os.PathLike[str], *, setting: str, plugin: str | None = None
) -> bytes:
    """The bytes of the file at ``path``, as they are: for key files and other binary secrets.

    A relative ``path`` is resolved as ``asapp_auth.paths.setting_path`` does.

    A file that cannot be read, or holds only whitespace, is a ``ConfigurationError`` naming the
    plugin, the setting and the path.
    """
    shown = setting_path(path)
    try:
        data = Path(shown).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{_setting(setting, plugin)}: file {shown!r} cannot be read "
            f"({type(exc).__name__}: {exc.strerror or 'unreadable'}); check the path and its "
            "permissions"
        ) from None
    if not data.strip():
        raise ConfigurationError(
            f"{_setting(setting, plugin)}: file {shown!r} is empty; write the secret into it"
        )
    return data


def resolve_secret(value: object, *, setting: str, plugin: str | None = None) -> str:
    """The secret that ``value``, the value of setting ``setting``, gives or refers to.

    ``plugin`` names the plugin whose setting it is (its entry-point name): every error message
    then starts ``plugin 'name':``. See the module's docstring for the forms ``value`` takes and
    the errors raised.
    """
    where = _setting(setting, plugin)
    if isinstance(value, Secret):
        resolved = value.reveal()
    elif not isinstance(value, str) or not value:
        given = type_with_article(value) if not isinstance(value, str) else "an empty str"
        raise ConfigurationError(f"{where} must be a non-empty str ({_FORMS}), not {given}")
    elif value.startswith("env:"):
        name = value[4:]
        if not name:
            raise ConfigurationError(f"{where} is 'env:' without a variable name")
        found = os.environ.get(name)
        if found is None or not found.strip():
            state = "is not set" if found is None else "is empty"
            raise ConfigurationError(
                f"{where} names environment variable {name!r}, which {state}; set it before "
                "asapp-auth is configured"
            )
        return found
    elif value.startswith("file:"):
        path = value[5:]
        if not path:
            raise ConfigurationError(f"{where} is 'file:' without a path")
        path = setting_path(path)
        data = read_secret_file(path, setting=setting, plugin=plugin)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(f"{where}: file {path!r} is not UTF-8 text") from None
        resolved = text.removesuffix("\n").removesuffix("\r")
        if not resolved.strip():
            raise ConfigurationError(f"{where}: file {path!r} is empty; write the secret into it")
        return resolved
    else:
        resolved = value.removeprefix("literal:")
    if not resolved.strip():
        raise ConfigurationError(f"{where} is empty (or only whitespace); give the secret")
    return resolved
