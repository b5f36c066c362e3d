"""``PipelineState``: what an ``AuthPipeline`` holds, and the bookkeeping its parts share.

``AuthPipeline.__init__`` sets every attribute declared here. The context store (``_store``) and
the logins (``_logins``) build on it; neither knows the other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import Any

import pluggy

from ._flight import Flight
from ._hookcalls import HookCall
from ._proofs import Classifies, Proofs, classifier_of, proofs_of
from ._refusals import Refusals
from .attach import Attacher
from .cache import CachedContext, ContextCache, SharedContextCache
from .classify import Classifier
from .customer import Customer
from .origins import Origin, format_origin

__all__ = ["CUSTOMER_PROVIDER", "PipelineState"]

log = logging.getLogger("asapp_auth")

# The name the customers' own context providers are registered under, asked first.
CUSTOMER_PROVIDER = "customer-provider"


class PipelineState:
    """The customer, its contexts in the cache and in flight, the plugins and the settings."""

    _origins: frozenset[Origin]
    _expiry_margin: float
    _refresh_ahead: float
    _ahead_fraction: float
    _provider_timeout: float
    _login_timeout: float
    _attacher: Attacher
    _max_context_bytes: int
    _classify: Classifier
    _default_rules: bool
    _reads_body_on: frozenset[int]
    _cache: ContextCache
    _shared: SharedContextCache | None
    _lock: threading.Lock
    # (customer, generation), swapped as one so a request reads both at once, without a lock.
    _state: tuple[Customer | None, int]
    _inflight: dict[object, Flight[CachedContext]]
    _refusals: Refusals
    _login: Flight[Customer] | None
    _pm: pluggy.PluginManager
    # Configured plugins' settings, digested: part of a shared cache's key (see _provider_id).
    _plugin_digests: dict[str, str]
    # The request-path hooks' implementations, or None when no plugin has any (see _proofs).
    _proofs: Proofs | None
    _classifies: Classifies | None

    def _hooks_changed(self) -> None:
        """Look the request-path hooks up again: a plugin came or went."""
        self._proofs = proofs_of(self._pm)
        self._classifies = classifier_of(self._pm)

    @property
    def origins(self) -> list[str]:
        return sorted(format_origin(origin) for origin in self._origins)

    def _cleared(self, customer: Customer) -> None:
        scope = None if self._shared is None else self._provider_id(customer)
        if self._shared is not None and scope is not None:
            self._shared.forget(customer, scope)
        self._notify("on_customer_cleared", pipeline=self, customer=customer)

    def _provider_id(self, customer: Customer) -> str | None:
        """What serves ``customer``, the same in every process running the same code and
        configuration: part of a shared cache's key. ``None`` when that cannot be told, and
        the customer's contexts stay in this process.

        An app's own provider shares only under a ``cache_scope`` it declares (closures and
        lambdas of one factory look alike across processes). Plugins share by name, settings and
        this pipeline's origins; one registered without a name (pluggy then names it by object
        id) keeps the pipeline from sharing at all.
        """
        if customer.provider is not None:
            return None if customer.cache_scope is None else f"own:{customer.cache_scope}"
        names = []
        for impl in reversed(self._pm.hook.provide_context.get_hookimpls()):
            name = impl.plugin_name
            if name == CUSTOMER_PROVIDER:
                continue
            if name.isdigit():
                return None
            names.append(f"{name}={self._plugin_digests.get(name, '')}")
        return "plugins:" + ",".join(names) + "@" + ",".join(self.origins)

    def _notify(self, hook: str, only: Collection[str] | None = None, **kwargs: Any) -> None:
        """Call every implementation of a notification hook (only the plugins named ``only``,
        when given); one failing stops no other."""
        call = HookCall(self._pm, hook, kwargs)
        for impl in call.impls:
            if only is not None and impl.plugin_name not in only:
                continue
            try:
                call(impl)
            except Exception as exc:
                log.warning(
                    "the %s hook of plugin %r raised %s; carrying on",
                    hook,
                    impl.plugin_name,
                    type(exc).__name__,
                )

    def _forget(self, customer: Customer | None) -> None:
        """Drop ``customer``'s context and disown its refresh in flight. Holds ``_lock``."""
        if customer is None:
            return
        self._cache.pop(customer.cache_key)
        self._refusals.discard(customer.cache_key)
        flight = self._inflight.pop(customer.cache_key, None)
        if flight is not None:
            flight.orphaned = True
