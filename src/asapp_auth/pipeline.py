"""``AuthPipeline``: the customer, the contexts that authenticate it, and their single flights.

Requests reach it through a client adapter (``httpx.Client(auth=pipeline)`` directly, or
``asapp_auth.requests``, ``asapp_auth.aiohttp``, ``asapp_auth.httpx2``), whose decision flow
(``_flow``) takes the cached path first and asks the pipeline for the slow operations: fetch,
refresh after a rejection, login. Those are single-flight: the first caller for a customer claims
a ``Flight`` and runs the provider (in its own thread when synchronous, in a worker thread under
asyncio); every other caller waits for that flight's outcome.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pluggy

from ._admit import DEFAULT_MAX_CONTEXT_BYTES, check_max_bytes
from ._checks import seconds as _seconds
from ._closing import Closing
from ._flight import Flight
from ._flow import auth_flow_async, auth_flow_sync
from ._httpx_wire import HttpxWire, register_httpx_module
from ._logins import Logins
from ._refusals import Refusals
from ._rejection import OnRejection, check_on_rejection
from ._state import CUSTOMER_PROVIDER
from ._store import ContextStore, CustomerProvider
from ._workers import off_loop
from .attach import Attacher, as_attacher
from .cache import CachedContext, ContextCache, MemoryContextCache, SharedContextCache
from .classify import Classifier, default_classifier
from .config import load_config
from .context import AuthContext
from .customer import ContextProvider, Customer
from .errors import (
    AsappAuthError,
    ConfigurationError,
)
from .logids import logged
from .origins import AsyncRedirectGuard, Origin, RedirectGuard, parse_origins
from .paths import relative_to
from .plugins import discover, get_plugin_manager, load_plugin, register_plugin

__all__ = ["AuthPipeline", "CustomerAuth"]

register_httpx_module(httpx)

log = logging.getLogger("asapp_auth")

# How many customers' refusals are remembered past a failed refresh (see _refusals).
_REFUSALS = 10_000


class AuthPipeline(ContextStore, Logins, Closing, httpx.Auth):
    """Authenticate an app's requests to the chat platform as its current customer.

    Give it to an existing ``httpx.Client`` or ``httpx.AsyncClient`` as ``auth=``. Requests to
    ``origins`` carry the current customer's context; requests anywhere else carry nothing.
    Close it when done (``close()``, ``aclose()``, ``with``, ``async with``): its plugins then
    release what they hold.

    :param origins: the platform origins (``scheme://host[:port]``) that may receive a context.
    :param plugins: entry-point plugins to use, by name, or a mapping of name to settings.
    :param cache: where contexts are kept; by default an in-process LRU of ``cache_size`` entries.
    :param expiry_margin: a context is no longer served this many seconds before it expires
        (at most a tenth of its lifetime).
    :param refresh_ahead: this many seconds before that, one caller refreshes it in the background
        while the others keep using it (at most ``refresh_ahead_fraction`` of its lifetime).
    :param provider_timeout: how long a provider may take to answer.
    :param login_timeout: how long requests wait for ``set_customer`` after a login is required.
    :param attach: how a context goes on a request: an ``Attacher`` or ``function(request,
        context)``; by default ``MapContext``.
    :param classify: ``function(response, context_attached) -> Verdict | None``, replacing the
        default rules of ``asapp_auth.classify``.
    :param max_context_bytes: the largest context accepted, both as put on a request and as
        kept in the cache (its JSON with its state); a larger one is refused, nothing cached.
    :param plugin_manager: a pluggy manager to use instead of a fresh one.
    :param on_rejection: what a request gets when the platform's 401 cannot be resolved (a context
        refused again right after a refresh, a login that did not happen or did not help):
        ``"raise"`` (the default) raises ``TokenRejectedError`` or ``LoginRequiredError``;
        ``"return"`` returns that 401 (or 431) response, as the client would without auth.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        origins: Iterable[str],
        *,
        plugins: Iterable[str] | Mapping[str, Mapping[str, Any] | None] = (),
        cache: ContextCache | None = None,
        cache_size: int = 10_000,
        expiry_margin: float = 10.0,
        refresh_ahead: float = 60.0,
        refresh_ahead_fraction: float = 0.25,
        provider_timeout: float = 30.0,
        login_timeout: float = 120.0,
        attach: Attacher | Callable[[httpx.Request, AuthContext], None] | None = None,
        classify: Classifier | None = None,
        max_context_bytes: int = DEFAULT_MAX_CONTEXT_BYTES,
        plugin_manager: pluggy.PluginManager | None = None,
        on_rejection: OnRejection = "raise",
    ) -> None:
        self._origins: frozenset[Origin] = parse_origins(origins)
        self._expiry_margin = _seconds("expiry_margin", expiry_margin)
        self._refresh_ahead = _seconds("refresh_ahead", refresh_ahead)
        fraction = _seconds("refresh_ahead_fraction", refresh_ahead_fraction)
        if fraction >= 1:
            raise ConfigurationError("refresh_ahead_fraction must be below 1")
        self._ahead_fraction = fraction
        self._provider_timeout = _seconds("provider_timeout", provider_timeout, positive=True)
        self._login_timeout = _seconds("login_timeout", login_timeout)
        self._attacher = as_attacher(attach)
        self._max_context_bytes = check_max_bytes(max_context_bytes)
        if classify is not None and not callable(classify):
            raise ConfigurationError("classify must be a function (response, context_attached)")
        self._classify: Classifier = classify or default_classifier
        self._default_rules = classify is None
        self._reads_body_on: frozenset[int] = frozenset(getattr(classify, "reads_body_on", ()))
        self._returns_rejections = check_on_rejection(on_rejection)
        if cache is None:
            cache = MemoryContextCache(cache_size)
        elif not isinstance(cache, ContextCache):
            raise ConfigurationError("cache must implement get, set, pop and clear (ContextCache)")
        self._cache: ContextCache = cache
        self._shared = cache if isinstance(cache, SharedContextCache) else None

        self._lock = threading.Lock()
        # (customer, generation), swapped as one so a request reads both at once, without a lock.
        self._state: tuple[Customer | None, int] = (None, 0)
        self._inflight: dict[object, Flight[CachedContext]] = {}
        self._refusals = Refusals(_REFUSALS)
        self._login: Flight[Customer] | None = None
        self._loaded = False
        self._warned_unscoped = False

        self._pm = plugin_manager or get_plugin_manager()
        # Configured plugins' settings, digested: part of a shared cache's key (see _provider_id).
        self._plugin_digests: dict[str, str] = {}
        register_plugin(self._pm, CustomerProvider(), CUSTOMER_PROVIDER)
        self._configure_plugins(plugins)
        self._hooks_changed()
        # httpx.Client(auth=pipeline) works as it always has: this pipeline is an httpx.Auth.
        self._httpx_sync = HttpxWire(self, httpx, RedirectGuard, "httpx")
        self._httpx_async = HttpxWire(self, httpx, AsyncRedirectGuard, "httpx")

    @classmethod
    def from_config(cls, path: str | Path | None = None) -> AuthPipeline:
        """A pipeline from ``asapp-auth.toml`` (or ``[tool.asapp-auth]``), found when not given.

        See ``asapp_auth.config`` for the format. Problems name the file and the key path; relative
        paths in the file's settings are taken from the file's folder.
        """
        config = load_config(path)
        try:
            with relative_to(config.folder):
                return cls(**config.pipeline_kwargs())
        except AsappAuthError as exc:
            raise ConfigurationError(f"{config.source}: {exc}") from exc

    def cached(self, customer: Customer | None = None) -> CachedContext | None:
        """The cache entry of the current (or given) customer, with the plugin that answered."""
        customer = customer or self._state[0]
        return None if customer is None else self._cache.get(customer.cache_key)

    # -- configuration --------------------------------------------------------------------------

    def _configure_plugins(
        self, plugins: Iterable[str] | Mapping[str, Mapping[str, Any] | None]
    ) -> None:
        if isinstance(plugins, str):
            raise ConfigurationError(
                f"plugins must be a list of names; write plugins=[{plugins!r}]"
            )
        wanted = (
            list(plugins.items()) if isinstance(plugins, Mapping) else [(n, None) for n in plugins]
        )
        if not wanted:
            return
        installed = {info.name: info for info in discover()}
        loaded: list[str] = []
        try:
            # pluggy asks the last registered first: register in reverse to ask in the given order.
            for name, settings in reversed(wanted):
                shown = json.dumps(settings, sort_keys=True, default=repr).encode()
                self._plugin_digests[name] = hashlib.sha256(shown).hexdigest()[:16]
                loaded.append(load_plugin(self._pm, name, settings, installed))
        except BaseException:
            # The app gets no pipeline to close: what the plugins built so far hold (an HTTP
            # client, a worker thread) is released here.
            self._release(loaded)
            raise

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    @property
    def login_timeout(self) -> float:
        """How long requests wait for ``set_customer`` once a login is required: a login
        handler that blocks may bound its own work by it."""
        return self._login_timeout

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (its ``@hookimpl`` methods); it is asked before older ones.

        Register through here rather than ``plugin_manager.register``: the request path looks
        up its hooks (``request_proof``, ``classify_response``) when a plugin comes or goes.
        """
        registered = register_plugin(self._pm, plugin, name)
        self._hooks_changed()
        return registered

    def unregister(self, plugin: object) -> None:
        """Remove a plugin registered with ``register``."""
        self._pm.unregister(plugin)
        self._hooks_changed()

    # -- the customer ---------------------------------------------------------------------------

    @property
    def customer(self) -> Customer | None:
        """The current customer, or ``None`` when anonymous."""
        return self._state[0]

    def load(
        self,
        customer_id: str | None = None,
        context_provider: ContextProvider | None = None,
        *,
        cache_scope: str | None = None,
    ) -> Customer | None:
        """Set the customer at start-up: identified (an id, and a provider or plugins to answer
        for it) or anonymous (no id). Later changes go through ``set_customer`` and ``clear``.

        ``cache_scope`` lets a shared cache share what ``context_provider`` returns (see
        ``set_customer``).
        """
        if self._loaded:
            raise ConfigurationError(
                "load() was already called for this pipeline; use set_customer() to change the "
                "customer mid-session, or clear() to go back to anonymous"
            )
        if customer_id is None:
            if context_provider is not None or cache_scope is not None:
                raise ConfigurationError(
                    "a context_provider (and a cache_scope) needs a customer_id"
                )
            self._loaded = True
            return None
        customer = self.set_customer(customer_id, context_provider, cache_scope=cache_scope)
        self._loaded = True
        return customer

    def set_customer(
        self,
        customer_id: str,
        context_provider: ContextProvider | None = None,
        *,
        cache_scope: str | None = None,
    ) -> Customer:
        """Make ``customer_id`` the current customer, from any thread or task.

        No request that starts after this returns carries the previous customer's context.
        Requests waiting for a login go on as this customer.

        ``cache_scope`` names what ``context_provider``'s contexts are valid for, the same in
        every process (a tenant, an environment): with a shared cache, processes that serve
        the customer under the same scope share them. Without it they stay in this process.
        """
        new = self._scoped(Customer.create(customer_id, context_provider, cache_scope))
        with self._lock:
            old, generation = self._state
            if new != old:
                self._state = (new, generation + 1)
                self._forget(old)
            login, self._login = self._login, None
        if login is not None:
            login.resolve(new)
        log.info("customer set to %s", logged(new.id))
        if old is not None and old != new:
            self._cleared(old)
        return new

    def clear(self) -> None:
        """Go back to an anonymous customer; the previous customer's contexts are dropped."""
        old = self._go_anonymous()
        if old is not None:
            self._cleared(old)

    async def aclear(self) -> None:
        """``clear()`` for asyncio: the customer is dropped at once; what clearing tells a shared
        cache and the plugins (``on_customer_cleared``) runs in a worker thread, off the loop."""
        old = self._go_anonymous()
        if old is not None:
            await off_loop(self._cleared, old)

    def _go_anonymous(self) -> Customer | None:
        """Drop the current customer, if any, and return it."""
        with self._lock:
            old, generation = self._state
            if old is None:
                return None
            self._state = (None, generation + 1)
            self._forget(old)
        log.info("customer %s cleared; now anonymous", logged(old.id))
        return old

    def for_customer(
        self,
        customer_id: str,
        context_provider: ContextProvider | None = None,
        *,
        cache_scope: str | None = None,
    ) -> CustomerAuth:
        """An ``httpx.Auth`` for one fixed customer, sharing this pipeline's plugins and cache.

        For servers acting for many customers at once:
        ``client.get(url, auth=pipeline.for_customer(customer_id))``. ``cache_scope`` is as
        for ``set_customer``.
        """
        customer = self._scoped(Customer.create(customer_id, context_provider, cache_scope))
        return CustomerAuth(self, customer)

    def _scoped(self, customer: Customer) -> Customer:
        """``customer``, after a warning (once per pipeline) when a shared cache is configured
        that its own provider, declaring no ``cache_scope``, keeps it from using."""
        if self._shared is not None and customer.provider is not None and not customer.cache_scope:
            with self._lock:
                warned, self._warned_unscoped = self._warned_unscoped, True
            if not warned:
                provider = customer.provider
                name = getattr(provider, "__qualname__", type(provider).__qualname__)
                log.warning(
                    "a shared cache is configured, but the context_provider %s declares no "
                    "cache_scope: its contexts stay in each process, which asks it on its own. "
                    "Pass cache_scope= to load(), set_customer() or for_customer() to share "
                    "them (this warning is given once per pipeline)",
                    name,
                )
        return customer

    # -- contexts -------------------------------------------------------------------------------

    def get_context(
        self, needs_refresh: bool = False, *, customer: Customer | None = None
    ) -> AuthContext | None:
        """The current (or given) customer's context, from the cache or its provider.

        ``needs_refresh=True`` asks the provider for a fresh one, once for concurrent callers.
        Returns ``None`` for an anonymous customer.
        """
        bound = customer is not None
        customer = customer or self._state[0]
        if customer is None:
            return None
        entry = self._lookup(customer, force=needs_refresh)
        if not isinstance(entry, CachedContext):
            entry.bound = bound
            entry = self._fetch_sync(entry)
        return entry.context

    async def aget_context(
        self, needs_refresh: bool = False, *, customer: Customer | None = None
    ) -> AuthContext | None:
        """``get_context`` for asyncio: a provider runs in a worker thread, off the loop."""
        bound = customer is not None
        customer = customer or self._state[0]
        if customer is None:
            return None
        entry = self._lookup(customer, force=needs_refresh)
        if not isinstance(entry, CachedContext):
            entry.bound = bound
            entry = await self._fetch_async(entry)
        return entry.context

    # -- login ----------------------------------------------------------------------------------

    # -- the httpx flow -------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        return auth_flow_sync(self._httpx_sync, request, None)

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return auth_flow_async(self._httpx_async, request, None)

    def __repr__(self) -> str:
        customer = self._state[0]
        return (
            f"AuthPipeline(origins={self.origins!r}, "
            f"customer={None if customer is None else customer.id!r})"
        )


class CustomerAuth(httpx.Auth):
    """An ``httpx.Auth`` for one fixed customer of an ``AuthPipeline`` (see ``for_customer``)."""

    requires_request_body = False
    requires_response_body = False

    def __init__(self, pipeline: AuthPipeline, customer: Customer) -> None:
        self.pipeline = pipeline
        self.customer = customer

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        return auth_flow_sync(self.pipeline._httpx_sync, request, self.customer)

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return auth_flow_async(self.pipeline._httpx_async, request, self.customer)

    def get_context(self, needs_refresh: bool = False) -> AuthContext | None:
        return self.pipeline.get_context(needs_refresh, customer=self.customer)

    async def aget_context(self, needs_refresh: bool = False) -> AuthContext | None:
        return await self.pipeline.aget_context(needs_refresh, customer=self.customer)

    def __repr__(self) -> str:
        return f"CustomerAuth(customer={self.customer.id!r})"


def adapter_target(auth: object, adapter: str) -> tuple[AuthPipeline, Customer | None]:
    """The pipeline and fixed customer (or ``None``) an adapter was given."""
    if isinstance(auth, CustomerAuth):
        return auth.pipeline, auth.customer
    if isinstance(auth, AuthPipeline):
        return auth, None
    raise TypeError(
        f"{adapter} takes an AuthPipeline or pipeline.for_customer(...), not {type(auth).__name__}"
    )
