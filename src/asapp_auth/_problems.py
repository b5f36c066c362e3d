"""Every problem of a plugin's settings at once, in the order the settings were given."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

from ._hints import unknown_setting
from .errors import ConfigurationError

__all__ = ["SettingsProblems"]

P = ParamSpec("P")
T = TypeVar("T")


class SettingsProblems:
    """Gathers the problems of one plugin's settings, to raise them together.

    ``plugin`` is the plugin's entry-point name, which starts the message (``plugin 'name':``);
    ``given`` are the settings (or their names) in the order they were given (a file's order), the
    order of the problems. With ``known``, ``given`` must be a mapping (else the error is raised
    at once) and each of its settings that is not known is a problem.

    ``check`` runs one setting's check and keeps the ``ConfigurationError`` it raises; ``add``
    keeps a problem found otherwise; ``raise_any`` raises one ``ConfigurationError`` holding them
    all (its ``problems`` lists each one). A check that raises another ``SettingsProblems``' error
    (a class's own checks, called from ``from_settings``) adds each of its problems under the
    setting it was about, so they take their place in this order.
    """

    def __init__(
        self, plugin: str, given: Iterable[str] = (), *, known: Collection[str] | None = None
    ) -> None:
        self.plugin = plugin
        self.prefix = f"plugin {plugin!r}: "
        if known is not None and not isinstance(given, Mapping):
            raise ConfigurationError(
                f"{self.prefix}settings must be a mapping, not {type(given).__name__}"
            )
        self._order = {name: index for index, name in enumerate(given)}
        self._found: list[tuple[int, str | None, str]] = []
        if known is not None:
            self.unknown(given, known)  # type: ignore[arg-type]

    def check(
        self, setting: str | None, check: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        """``check(*args, **kwargs)``, or ``None`` when it raised a ``ConfigurationError``,
        kept as a problem of ``setting`` (``None``: of the settings as a whole)."""
        try:
            return check(*args, **kwargs)
        except ConfigurationError as exc:
            # Another SettingsProblems' error says which setting each problem is about.
            about = getattr(exc, "_about", None) or [None] * len(exc.problems)
            for problem, named in zip(exc.problems, about, strict=True):
                self.add(named or setting, problem)
            return None

    def add(self, setting: str | None, problem: str) -> None:
        """Keep ``problem`` (said without the ``plugin 'name':`` prefix, which is dropped)."""
        base = None if setting is None else re.split(r"[\[.]", setting, maxsplit=1)[0]
        position = self._order.get(base, len(self._order)) if base is not None else len(self._order)
        self._found.append((position, setting, problem.removeprefix(self.prefix)))

    def unknown(self, settings: Mapping[str, Any], known: Collection[str]) -> None:
        """Keep a problem for each setting of ``settings`` that is not ``known``."""
        for name in settings:
            if name not in known:
                self.add(name, unknown_setting(str(name), known))

    def failed(self, *settings: str) -> bool:
        """Whether a problem was kept for one of ``settings`` (for any, when none is named)."""
        return any(not settings or setting in settings for _, setting, _ in self._found)

    def raise_any(self) -> None:
        """Raise the problems kept, in the order of the settings, as one error; else nothing."""
        if not self._found:
            return
        found = sorted(self._found, key=lambda item: item[0])
        problems = [text for _, _, text in found]
        if len(problems) == 1:
            message = f"{self.prefix}{problems[0]}"
        else:
            listed = "\n".join(f"  - {problem}" for problem in problems)
            message = f"{self.prefix}{len(problems)} problems:\n{listed}"
        error = ConfigurationError(message, problems=problems)
        error._about = [setting for _, setting, _ in found]  # type: ignore[attr-defined]
        raise error
