"""What to tell a user who mistyped a name, or lacks a plugin: the closest known name, and the
install command that works today."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

__all__ = [
    "BUNDLED",
    "PLUGIN_COMMANDS",
    "closest",
    "did_you_mean",
    "install_hint",
    "unknown_setting",
]

BUNDLED = {
    "static": "plugins/asapp-auth-static",
    "jwt": "plugins/asapp-auth-jwt",
    "oauth2": "plugins/asapp-auth-oauth2",
    "example": "examples/asapp-auth-example",
}
"""The plugin distributions in asapp-auth's repository, by entry-point name, where they live."""

PLUGIN_COMMANDS = {"jwks": "jwt"}
"""The commands our own plugins add to ``asapp-auth``, by the plugin that adds them: names only,
to say what to install when one is asked for without its plugin."""

# src/asapp_auth/_hints.py -> the checkout's root, when asapp-auth runs from one.
_CHECKOUT = Path(__file__).resolve().parents[2]


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name ``word`` is most likely a typo of, or ``None`` when none is close."""
    matches = difflib.get_close_matches(word, sorted(set(known)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest known name, or ``""``."""
    match = closest(word, known)
    return "" if match is None else f" (did you mean {match!r}?)"


def install_hint(name: str) -> str | None:
    """How to install the bundled plugin ``name``, or ``None`` for a plugin we do not ship.

    The plugins are on no package index: from a checkout this is the path to its folder.
    """
    where = BUNDLED.get(name)
    if where is None:
        return None
    folder = _CHECKOUT / where
    if (folder / "pyproject.toml").is_file():
        try:
            shown = f"./{folder.relative_to(Path.cwd().resolve()).as_posix()}"
        except ValueError:
            shown = os.fspath(folder)
        return f"pip install {shown}"
    return f"pip install ./{where} (from a checkout of asapp-auth: it is on no package index)"


def unknown_setting(name: str, known: Iterable[str], *, named: bool = True) -> str:
    """The one wording for a setting nobody knows: ``unknown setting 'x' (did you mean 'y'?);
    the settings are ...``; ``named=False`` leaves the name out, for a key path that says it."""
    listed = sorted(set(known))
    shown = f" {name!r}" if named else ""
    return (
        f"unknown setting{shown}{did_you_mean(name, listed)}; the settings are {', '.join(listed)}"
    )


def extra_hint(extra: str) -> str:
    """The pip command that installs what asapp-auth's ``extra`` adds: its packages by name, as
    they are on PyPI (asapp-auth itself is on no index, so ``asapp-auth[extra]`` would not do)."""
    try:
        requires = metadata.requires("asapp-auth") or []
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        requires = []
    marker = re.compile(rf"""^(?P<spec>[^;]+);\s*extra\s*==\s*["']{re.escape(extra)}["']\s*$""")
    specs = [m["spec"].strip() for r in requires if (m := marker.match(r))]
    if not specs:
        return f"pip install '.[{extra}]' (from a checkout of asapp-auth)"
    return "pip install " + " ".join(f"'{spec}'" for spec in sorted(specs))
