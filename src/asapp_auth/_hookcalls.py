"""Hook calls made one implementation at a time, traced like pluggy's own calls.

The pipeline calls ``provide_context``, ``on_token_expired`` and ``on_customer_cleared``
implementation by implementation (to name the plugin that answered or failed, and to let one
failing notification stop no other). pluggy's call monitoring does not see such calls, so they are
traced here, under the same switch (``ASAPP_AUTH_TRACE_HOOKS``) and on the same logger: hook and
plugin names only, never arguments or results, which hold secrets.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import pluggy

__all__ = ["TRACE_ENV", "HookCall", "trace_hooks"]

TRACE_ENV = "ASAPP_AUTH_TRACE_HOOKS"

_log = logging.getLogger("asapp_auth.hooks")
_traced: weakref.WeakSet[pluggy.PluginManager] = weakref.WeakSet()


def trace_hooks(manager: pluggy.PluginManager) -> None:
    """Trace every hook call of ``manager`` when ``ASAPP_AUTH_TRACE_HOOKS`` asks for it."""
    if os.environ.get(TRACE_ENV, "0") in ("", "0"):
        return
    _traced.add(manager)
    manager.add_hookcall_monitoring(_before, _after)


def _before(hook: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
    _log.debug("calling %s on %s", hook, [impl.plugin_name for impl in impls])


def _after(outcome: Any, hook: str, impls: Sequence[pluggy.HookImpl], kwargs: Any) -> None:
    _log.debug("%s %s", hook, "raised" if outcome.exception is not None else "returned")


class HookCall:
    """One call of ``hook`` on ``manager``: ``impls`` in pluggy's calling order (wrappers left
    out), each called with ``call(impl)``."""

    __slots__ = ("_hook", "_kwargs", "_traced", "impls")

    def __init__(self, manager: pluggy.PluginManager, hook: str, kwargs: Mapping[str, Any]) -> None:
        self._hook = hook
        self._kwargs = kwargs
        self.impls: list[pluggy.HookImpl] = [
            impl
            for impl in reversed(getattr(manager.hook, hook).get_hookimpls())
            if not (impl.hookwrapper or impl.wrapper)
        ]
        self._traced = manager in _traced
        if self._traced:
            _before(hook, self.impls, kwargs)

    def __call__(self, impl: pluggy.HookImpl) -> object:
        """What ``impl`` returns for this call's arguments; what it raises goes through.

        Parameters ``impl`` declares with a default (``deadline=None``) are given when the call
        has them, as pluggy 1.6 and later do.
        """
        extra = {name: self._kwargs[name] for name in impl.kwargnames if name in self._kwargs}
        try:
            result = impl.function(*[self._kwargs[arg] for arg in impl.argnames], **extra)
        except BaseException as exc:
            if self._traced:
                _log.debug(
                    "%s of plugin %r raised %s", self._hook, impl.plugin_name, type(exc).__name__
                )
            raise
        if self._traced:
            answer = "None" if result is None else "an answer"
            _log.debug("%s of plugin %r returned %s", self._hook, impl.plugin_name, answer)
        return result
