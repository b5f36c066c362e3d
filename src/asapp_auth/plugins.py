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
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import AsappAuthError, ConfigurationError, PluginError

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "check_settings",
    "configure_plugin",
    "discover",
    "get_plugin_manager",
    "hooks_of",
    "register_plugin",
]

ENTRY_POINT_GROUP = "asapp_auth"
ALLOW_ENV = "ASAPP_AUTH_PLUGINS"
TRACE_ENV = "ASAPP_AUTH_TRACE_HOOKS"

_hook_log = logging.getLogger("asapp_auth.hooks")


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
    if os.environ.get(TRACE_ENV, "0") not in ("", "0"):
        manager.add_hookcall_monitoring(_trace_before, _trace_after)
    return manager


def _trace_before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    _hook_log.debug("calling %s on %s", hook_name, [impl.plugin_name for impl in impls])


def _trace_after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
    failed = outcome.exception is not None
    _hook_log.debug("%s %s", hook_name, "raised" if failed else "returned")


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


def configure_plugin(info: PluginInfo, settings: Mapping[str, Any] | None = None) -> object:
    """Turn a discovered entry point into a plugin object ready to register.

    An entry point whose object has ``from_settings`` is a factory: it is called with the
    settings and returns the plugin. Any other object is the plugin itself and takes no settings.
    """
    if info.error is not None:
        raise PluginError(
            f"plugin {info.name!r} could not be loaded ({info.error}); reinstall it, or remove it "
            "from the pipeline's plugins",
            plugin=info.name,
        )
    factory = getattr(info.plugin, "from_settings", None)
    if factory is None:
        if settings:
            raise PluginError(
                f"plugin {info.name!r} takes no settings, but was given {sorted(settings)}",
                plugin=info.name,
            )
        return info.plugin
    try:
        return factory(dict(settings or {}))
    except AsappAuthError:
        raise
    except Exception as exc:
        raise PluginError(
            f"plugin {info.name!r} rejected its settings ({type(exc).__name__}); "
            "check them against the plugin's documentation",
            plugin=info.name,
        ) from exc


def check_settings(settings: object, known: Collection[str], plugin: str) -> Mapping[str, Any]:
    """The settings mapping of ``plugin``, refused when it is no mapping or names unknown keys.

    For plugins' ``from_settings``: the same check for settings from code and from a file.
    """
    if not isinstance(settings, Mapping):
        raise ConfigurationError(
            f"{plugin}: settings must be a mapping, not {type(settings).__name__}"
        )
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigurationError(
            f"{plugin}: unknown settings {unknown}; the settings are {sorted(known)}"
        )
    return settings


def register_plugin(manager: pluggy.PluginManager, plugin: object, name: str | None) -> str:
    """Register ``plugin``, refusing async or misspelt hook implementations. Returns its name."""
    label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    for attr in dir(plugin):
        function = getattr(plugin, attr, None)
        opts = manager.parse_hookimpl_opts(plugin, attr)
        if opts is not None and inspect.iscoroutinefunction(function):
            raise PluginError(
                f"plugin {label!r}: hook {attr!r} is an async function; hooks must be plain "
                "functions (asapp-auth already calls them off the event loop)",
                plugin=label,
            )
    try:
        registered = manager.register(plugin, name=name)
        manager.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        if manager.is_registered(plugin):
            manager.unregister(plugin)
        raise PluginError(f"plugin {label!r} could not be registered: {exc}", plugin=label) from exc
    if registered is None:  # pluggy refuses names that were blocked
        raise PluginError(f"plugin {label!r} is blocked in this pipeline", plugin=label)
    return registered


def hooks_of(plugin: object) -> list[str]:
    """The asapp-auth hooks ``plugin`` implements; for a module, its classes' hooks too."""
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    targets = [plugin]
    if inspect.ismodule(plugin):
        exported = getattr(plugin, "__all__", None) or dir(plugin)
        targets += [
            getattr(plugin, n) for n in exported if inspect.isclass(getattr(plugin, n, None))
        ]
    names = {
        attr
        for target in targets
        for attr in dir(target)
        if hasattr(getattr(target, attr, None), marker)
    }
    return sorted(names)
