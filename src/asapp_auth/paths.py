"""Paths in settings: a relative path is taken from the folder of the file that names it.

A configuration file is found by walking up from the working folder, so a path written in it
(``token_file = "token.txt"``, ``keys = ["file:keys/cache.key"]``) means the file beside it, not
one in wherever the command happens to run. While a file's settings are applied,
``relative_to(folder)`` is in force; ``setting_path`` resolves against it. Settings given in code
keep Python's rule: relative to the working folder.

``asapp_auth.secrets`` resolves ``file:PATH`` references and key files this way; plugins that
open a path setting themselves pass it through ``setting_path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

__all__ = ["relative_to", "setting_path"]

_folder: ContextVar[Path | None] = ContextVar("asapp_auth.paths.folder", default=None)


@contextmanager
def relative_to(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Resolve relative setting paths against ``folder`` (made absolute) in this block."""
    token = _folder.set(Path(folder).expanduser().resolve())
    try:
        yield
    finally:
        _folder.reset(token)


def setting_path(path: str | os.PathLike[str]) -> str:
    """``path``, a setting's value, with ``~`` expanded and, when it is relative and a
    configuration file is being applied, joined to that file's folder."""
    expanded = Path(path).expanduser()
    folder = _folder.get()
    if folder is None or expanded.is_absolute():
        return os.fspath(expanded)
    return os.fspath(folder / expanded)
