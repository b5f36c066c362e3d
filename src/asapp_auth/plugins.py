"""Finding, loading and registering plugins.

Installed is not active: ``discover()`` only lists what the entry-point group ``asapp_auth``
offers. A pipeline registers the plugins it is configured with, by name, and nothing else.

Environment variables:

- ``ASAPP_AUTH_PLUGINS``: a comma-separated allow-list of entry-point names that may be loaded at
  all (empty: none). Unset: every installed plugin may be loaded.
- ``ASAPP_AUTH_TRACE_HOOKS``: when set to a non-empty value other than ``0``, every hook call is
  logged at DEBUG on the ``asapp_auth.hooks`` logger, with the plugins it reached. Arguments and
  results are never logged: they hold secrets.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from ._hints import BUNDLED, closest, did_you_mean, install_hint
from ._hookcalls import trace_hooks
from ._problems import SettingsProblems
from .errors import AsappAuthError, ConfigurationError, PluginError, PluginWarning

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "SettingsProblems",
    "check_settings",
    "configure_plugin",
    "discover",
    "get_plugin_manager",
    "hook_names",
    "hooks_of",
    "load_plugin",
    "register_plugin",
    "unavailable",
]

ENTRY_POINT_GROUP = "asapp_auth"
ALLOW_ENV = "ASAPP_AUTH_PLUGINS"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One entry point of the ``asapp_auth`` group: loaded, or with the reason it failed."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    plugin: object | None = None
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.error is None


def get_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager that knows asapp-auth's hooks and has no plugin registered."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    trace_hooks(manager)
    return manager


def _allowed_names() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def discover(group: str = ENTRY_POINT_GROUP) -> list[PluginInfo]:
    """Load every allowed entry point of ``group`` one by one.

    A plugin that fails to import is returned with its error instead of breaking the others.
    """
    allowed = _allowed_names()
    found: list[PluginInfo] = []
    seen: set[str] = set()
    for entry in sorted(metadata.entry_points(group=group), key=lambda ep: ep.name):
        if entry.name in seen or (allowed is not None and entry.name not in allowed):
            continue
        seen.add(entry.name)
        dist = entry.dist
        name, version = (dist.metadata["Name"], dist.version) if dist is not None else (None, None)
        try:
            plugin = entry.load()
        except Exception as exc:  # a broken plugin must not break the host or the others
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            found.append(PluginInfo(entry.name, entry.value, name, version, error=error))
        else:
            found.append(PluginInfo(entry.name, entry.value, name, version, plugin=plugin))
    return found


def unavailable(name: str, installed: Iterable[str], group: str = ENTRY_POINT_GROUP) -> str:
    """Why no plugin named ``name`` can be configured, in one line that says what to do.

    ``installed`` are the names ``discover()`` found. A plugin that is installed but left out
    by ``ASAPP_AUTH_PLUGINS`` is said to be not allowed; a typo gets the closest known name; a
    plugin of asapp-auth's own that is missing gets the install command that works today.
    """
    installed = sorted(installed)
    if name not in installed and any(e.name == name for e in metadata.entry_points(group=group)):
        return (
            f"plugin {name!r} is installed but not allowed: "
            f"{ALLOW_ENV}={os.environ.get(ALLOW_ENV, '')!r} does not list it; add it to "
            f"{ALLOW_ENV}, or unset {ALLOW_ENV} to allow every installed plugin"
        )
    listed = ", ".join(installed) or "none"
    message = f"no installed plugin is named {name!r} (installed: {listed})"
    match = closest(name, [*installed, *BUNDLED])
    if match in installed:
        return f"{message}; did you mean {match!r}?"
    hint = install_hint(match or name)
    if hint is not None:
        if match is not None and match != name:
            return f"{message}; did you mean {match!r}? It is not installed: {hint}"
        return f"{message}; {hint}"
    return (
        f"{message}; install the distribution that provides it (an entry point of the "
        f"{group!r} group), or check the name"
    )


def configure_plugin(info: PluginInfo, settings: Mapping[str, Any] | None = None) -> object:
    """Turn a discovered entry point into a plugin object ready to register.

    An entry point whose object has ``from_settings`` is a factory: it is called with the
    settings and returns the plugin. Any other object is the plugin itself and takes no settings.
    """
    if info.error is not None:
        raise PluginError(
            f"plugin {info.name!r}: could not be loaded ({info.error}); reinstall it, or remove "
            "it from the pipeline's plugins",
            plugin=info.name,
        )
    factory = getattr(info.plugin, "from_settings", None)
    if factory is None:
        if settings:
            raise PluginError(
                f"plugin {info.name!r}: takes no settings, but was given {sorted(settings)}",
                plugin=info.name,
            )
        return info.plugin
    try:
        return factory(dict(settings or {}))
    except AsappAuthError:
        raise
    except Exception as exc:
        raise PluginError(
            f"plugin {info.name!r}: from_settings raised {type(exc).__name__}; check the "
            "settings against the plugin's documentation",
            plugin=info.name,
        ) from exc


def load_plugin(
    manager: pluggy.PluginManager,
    name: str,
    settings: Mapping[str, Any] | None,
    installed: Mapping[str, PluginInfo],
) -> str:
    """Configure the installed plugin ``name`` and register it on ``manager``, as a pipeline
    does for each plugin it is configured with; ``installed`` is what ``discover()`` found."""
    info = installed.get(name)
    if info is None:
        raise ConfigurationError(unavailable(name, installed))
    return register_plugin(manager, configure_plugin(info, settings), name)


def check_settings(settings: object, known: Collection[str], plugin: str) -> Mapping[str, Any]:
    """The settings mapping of ``plugin`` (its entry-point name), refused when it is no mapping
    or names settings that are not ``known``: every unknown one at once, each with the closest
    known name.

    For plugins' ``from_settings``: the same check for settings from code and from a file. To
    report the other problems of the settings with the unknown ones, use ``SettingsProblems``.
    """
    problems = SettingsProblems(plugin, settings, known=known)  # type: ignore[arg-type]
    problems.raise_any()
    return settings  # type: ignore[return-value]


def hook_names(manager: pluggy.PluginManager) -> list[str]:
    """The names of the hooks ``manager`` has specifications for."""
    return sorted(
        name
        for name, caller in vars(manager.hook).items()
        if isinstance(caller, pluggy.HookCaller) and caller.spec is not None
    )


def _hook_problems(manager: pluggy.PluginManager, plugin: object, label: str) -> list[str]:
    """What is wrong with ``plugin``'s hook implementations, each said with what to do."""
    known = hook_names(manager)
    problems = []
    for attr in dir(plugin):
        opts = manager.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        function = getattr(plugin, attr)
        hook = opts.get("specname") or attr
        if hook not in known:
            if not opts.get("optionalhook"):
                problems.append(
                    f"{attr!r} is marked @hookimpl but no hook has that name"
                    f"{did_you_mean(hook, known)}; the hooks are {', '.join(known)}"
                )
            continue
        if inspect.iscoroutinefunction(function):
            problems.append(
                f"hook {hook!r} is an async function; hooks must be plain functions "
                "(asapp-auth already calls them off the event loop)"
            )
            continue
        spec = getattr(manager.hook, hook).spec
        impl = pluggy.HookImpl(plugin, label, function, opts)
        for arg in (a for a in impl.argnames if a not in spec.argnames):
            problems.append(
                f"hook {hook!r} takes a parameter {arg!r} that the hook does not give"
                f"{did_you_mean(arg, spec.argnames)}; it may take any of "
                f"{', '.join(spec.argnames)}"
            )
    return problems


def _warn_unmarked(manager: pluggy.PluginManager, plugin: object, label: str) -> None:
    """Warn about functions named like a hook but not marked ``@hookimpl``: never called."""
    for hook in hook_names(manager):
        function = getattr(plugin, hook, None)
        if callable(function) and manager.parse_hookimpl_opts(plugin, hook) is None:
            warnings.warn(
                f"plugin {label!r}: {hook!r} is not marked @asapp_auth.hookimpl, so it is never "
                "called; mark it, or rename it",
                PluginWarning,
                stacklevel=3,
            )


def register_plugin(manager: pluggy.PluginManager, plugin: object, name: str | None) -> str:
    """Register ``plugin``, refusing async, misspelt or mistyped hook implementations, and
    warning about unmarked functions named like a hook. Returns the name it is registered under.
    """
    label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    problems = _hook_problems(manager, plugin, label)
    if problems:
        raise PluginError(_joined(f"plugin {label!r}", problems), plugin=label, problems=problems)
    _warn_unmarked(manager, plugin, label)
    try:
        registered = manager.register(plugin, name=name)
        manager.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        if manager.is_registered(plugin):
            manager.unregister(plugin)
        raise PluginError(
            f"plugin {label!r}: could not be registered: {exc}", plugin=label
        ) from exc
    if registered is None:  # pluggy refuses names that were blocked
        raise PluginError(f"plugin {label!r}: is blocked in this pipeline", plugin=label)
    return registered


def _joined(prefix: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{prefix}: {problems[0]}"
    return f"{prefix}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _targets(plugin: object) -> list[object]:
    """``plugin``, and for a module the classes it exports: where its hooks may be."""
    targets = [plugin]
    if inspect.ismodule(plugin):
        exported = getattr(plugin, "__all__", None) or dir(plugin)
        targets += [
            getattr(plugin, n) for n in exported if inspect.isclass(getattr(plugin, n, None))
        ]
    return targets


def hooks_of(plugin: object) -> list[str]:
    """The asapp-auth hooks ``plugin`` implements; for a module, its classes' hooks too."""
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    names = {
        attr
        for target in _targets(plugin)
        for attr in dir(target)
        if hasattr(getattr(target, attr, None), marker)
    }
    return sorted(names)


def hook_problems_of(plugin: object) -> list[str]:
    """What registering ``plugin`` (or, for a module, one of its classes' objects) would refuse:
    unknown hook names, async hooks, parameters a hook does not give."""
    manager = get_plugin_manager()
    problems = []
    for target in _targets(plugin):
        label = getattr(target, "__name__", None) or type(target).__name__
        where = f"{label}: " if target is not plugin else ""
        problems += [f"{where}{problem}" for problem in _hook_problems(manager, target, label)]
    return problems
