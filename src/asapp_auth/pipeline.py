"""``AuthPipeline``: the customer, the contexts that authenticate it, and their single flights.

Requests reach it through a client adapter (``httpx.Client(auth=pipeline)`` directly, or
``asapp_auth.requests``, ``asapp_auth.aiohttp``, ``asapp_auth.httpx2``), whose decision flow
(``_flow``) takes the cached path first and asks the pipeline for the slow operations: fetch,
refresh after a rejection, login. Those are single-flight: the first caller for a customer claims
a ``Flight`` and runs the provider (in its own thread when synchronous, in a worker thread under
asyncio); every other caller waits for that flight's outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pluggy

from ._checks import seconds as _seconds
from ._flight import Flight
from ._flow import auth_flow_async, auth_flow_sync
from ._hookcalls import HookCall
from ._httpx_wire import HttpxWire, register_httpx_module
from ._ops import Fetch, Login, Op, Rejected
from ._refusals import Refusals
from .attach import Attacher, as_attacher
from .cache import CachedContext, ContextCache, MemoryContextCache, SharedContextCache
from .classify import Classifier, default_classifier
from .config import load_config
from .context import AuthContext
from .customer import ContextProvider, Customer
from .errors import (
    AsappAuthError,
    ConfigurationError,
    InvalidContextError,
    LoginRequiredError,
    NoProviderError,
    ProviderError,
    ProviderTimeoutError,
)
from .hookspecs import hookimpl
from .origins import AsyncRedirectGuard, Origin, RedirectGuard, format_origin, parse_origins
from .paths import relative_to
from .plugins import discover, get_plugin_manager, load_plugin, register_plugin

__all__ = ["AuthPipeline", "CustomerAuth"]

register_httpx_module(httpx)

log = logging.getLogger("asapp_auth")

CUSTOMER_PROVIDER = "customer-provider"
# A request whose context was refused may join a fetch already in flight; with a shared cache
# that fetch can be a mere re-read that brings back the refused context. It then claims again
# (the refused copy is dropped and a refresh starts), this many times at most.
_REJOINS = 3
# How many customers' refusals are remembered past a failed refresh (see _refusals).
_REFUSALS = 10_000


class _CustomerProvider:
    """Serves each customer's own ``context_provider`` through ``provide_context``, first."""

    @hookimpl(tryfirst=True)
    def provide_context(
        self, customer: Customer, needs_refresh: bool
    ) -> Mapping[str, Any] | AuthContext | None:
        if customer.provider is None:
            return None
        return customer.ask(needs_refresh)


class AuthPipeline(httpx.Auth):
    """Authenticate an app's requests to the chat platform as its current customer.

    Give it to an existing ``httpx.Client`` or ``httpx.AsyncClient`` as ``auth=``. Requests to
    ``origins`` carry the current customer's context; requests anywhere else carry nothing.

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
    :param plugin_manager: a pluggy manager to use instead of a fresh one.
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
        plugin_manager: pluggy.PluginManager | None = None,
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
        if classify is not None and not callable(classify):
            raise ConfigurationError("classify must be a function (response, context_attached)")
        self._classify: Classifier = classify or default_classifier
        self._default_rules = classify is None
        self._reads_body_on: frozenset[int] = frozenset(getattr(classify, "reads_body_on", ()))
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
        register_plugin(self._pm, _CustomerProvider(), CUSTOMER_PROVIDER)
        self._configure_plugins(plugins)
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
        # pluggy asks the last registered first: register in reverse to ask in the given order.
        for name, settings in reversed(wanted):
            shown = json.dumps(settings, sort_keys=True, default=repr).encode()
            self._plugin_digests[name] = hashlib.sha256(shown).hexdigest()[:16]
            load_plugin(self._pm, name, settings, installed)

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    @property
    def origins(self) -> list[str]:
        return sorted(format_origin(origin) for origin in self._origins)

    @property
    def login_timeout(self) -> float:
        """How long requests wait for ``set_customer`` once a login is required: a login
        handler that blocks may bound its own work by it."""
        return self._login_timeout

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (its ``@hookimpl`` methods); it is asked before older ones."""
        return register_plugin(self._pm, plugin, name)

    def unregister(self, plugin: object) -> None:
        """Remove a plugin registered with ``register``."""
        self._pm.unregister(plugin)

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
        log.info("customer set to %r", new.id)
        if old is not None and old != new:
            self._cleared(old)
        return new

    def clear(self) -> None:
        """Go back to an anonymous customer; the previous customer's contexts are dropped."""
        with self._lock:
            old, generation = self._state
            if old is None:
                return
            self._state = (None, generation + 1)
            self._forget(old)
        log.info("customer %r cleared; now anonymous", old.id)
        self._cleared(old)

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

    def _notify(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of a notification hook; one failing stops no other."""
        call = HookCall(self._pm, hook, kwargs)
        for impl in call.impls:
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

    def _lookup(self, customer: Customer, force: bool = False) -> CachedContext | Fetch:
        """The cached path: a fresh entry, or the fetch to run. Starts a refresh ahead if due."""
        entry = self._cache.get(customer.cache_key)
        if entry is None:
            return Fetch(customer, None, force)
        now = time.monotonic()
        if force or now >= entry.expires_at:
            return Fetch(customer, entry, force or now >= entry.valid_until)
        if now >= entry.refresh_at and not entry.ahead_started:
            self._start_refresh_ahead(customer, entry)
        return entry

    def _make_entry(self, context: AuthContext, plugin: str, asked_at: float) -> CachedContext:
        lifetime = context.expires_in
        remaining = context.remaining()
        if lifetime is None or remaining is None:
            return CachedContext(context, plugin, asked_at, math.inf, math.inf)
        if remaining <= 0:
            raise InvalidContextError(
                f"plugin {plugin!r} returned a context that had already expired; return a fresh "
                "context when asked (needs_refresh=True means the last one was refused)",
                plugin=plugin,
            )
        # Counted on the monotonic clock from when the provider was asked, and never past what
        # is left of a context the provider made earlier and returned again.
        end = min(asked_at + lifetime, time.monotonic() + remaining)
        expires = end - min(self._expiry_margin, lifetime * 0.1)
        refresh = expires - min(self._refresh_ahead, lifetime * self._ahead_fraction)
        return CachedContext(context, plugin, asked_at, refresh, expires)

    def _claim(
        self,
        customer: Customer,
        stale: CachedContext | None,
        rejected: bool = False,
        bound: bool = False,
    ) -> tuple[Flight[CachedContext] | None, bool, CachedContext | None]:
        """Join the customer's flight, start one (leader), or find it already refreshed."""
        key = customer.cache_key
        with self._lock:
            current = self._cache.get(key)
            if rejected and current is not None and _same(current, stale):
                self._cache.pop(key)  # never serve a context the server has refused
                self._refusals.add(key, current)
                current = None
            fresh = current is not None and time.monotonic() < current.expires_at
            if fresh and current is not stale:
                return None, False, current
            flight = self._inflight.get(key)
            if flight is not None and flight.done:
                # Finished flights leave the table before they finish; never join one that
                # did not: its outcome is known already, and a failure is no answer to this ask.
                flight = None
            if flight is not None and flight.overdue():
                # Nobody waited on it (a refresh ahead), so it never timed out: start afresh.
                flight.expire(notify=False)  # we hold _lock, and replace it below
                flight = None
            if flight is not None:
                return flight, False, None
            flight = Flight(
                self._provider_timeout,
                lambda: ProviderTimeoutError(
                    f"no context for customer {customer.id!r} within provider_timeout="
                    f"{self._provider_timeout:g}s; make the provider answer sooner or raise the "
                    "timeout. Nothing was cached: the next request asks again",
                    customer_id=customer.id,
                ),
                lambda flight: self._drop_flight(key, flight),
            )
            # A customer switched away from is still served to requests begun before the switch,
            # but what is fetched for it then is not kept.
            flight.orphaned = not bound and customer != self._state[0]
            self._inflight[key] = flight
            return flight, True, None

    def _drop_flight(self, key: object, flight: Flight[Any]) -> None:
        with self._lock:
            if self._inflight.get(key) is flight:
                del self._inflight[key]

    def _fetch_sync(self, fetch: Fetch, rejected: bool = False) -> CachedContext:
        for _ in range(_REJOINS):
            flight, leader, current = self._claim(
                fetch.customer, fetch.stale, rejected, fetch.bound
            )
            if flight is None:
                assert current is not None
                return current
            if leader:
                self._run(flight, fetch, rejected, in_thread=False)
            entry = flight.wait()
            if not (rejected and _same(entry, fetch.stale)):
                break
        return entry

    async def _fetch_async(self, fetch: Fetch, rejected: bool = False) -> CachedContext:
        for _ in range(_REJOINS):
            flight, leader, current = self._claim(
                fetch.customer, fetch.stale, rejected, fetch.bound
            )
            if flight is None:
                assert current is not None
                return current
            if leader:
                _spawn(self._run, flight, fetch, rejected, True, bounded=False)
            entry = await flight.wait_async()
            if not (rejected and _same(entry, fetch.stale)):
                break
        return entry

    def _start_refresh_ahead(self, customer: Customer, entry: CachedContext) -> None:
        with self._lock:
            if entry.ahead_started:
                return
            entry.ahead_started = True
        flight, leader, _ = self._claim(customer, entry)
        if leader:
            assert flight is not None
            fetch = Fetch(customer, entry, True)
            _spawn(self._run, flight, fetch, False, True, True, bounded=False)

    def _run(
        self,
        flight: Flight[CachedContext],
        fetch: Fetch,
        rejected: bool,
        in_thread: bool,
        ahead: bool = False,
    ) -> None:
        """Ask the providers once and complete ``flight`` with the outcome."""
        customer, stale = fetch.customer, fetch.stale
        key = customer.cache_key
        renew = fetch.needs_refresh or rejected
        with self._lock:
            refused = self._refusals.get(key)
        if refused is not None:
            # The last context was refused and its refresh failed: this ask is a refresh too,
            # from that context (its state may hold what the refresh needs).
            renew = True
            stale = stale or refused

        late: list[float] = []

        def produce(previous: AuthContext | None, refresh: bool = renew) -> CachedContext:
            if rejected and stale is not None:
                self._token_expired(customer, stale.context)
            asked_at = time.monotonic()
            # Off an event loop, at most _WORKERS providers run at once (see _WORKERS).
            with _WORKERS if in_thread else contextlib.nullcontext():
                context, plugin = self._ask(customer, refresh, previous)
            took = time.monotonic() - asked_at
            if took > self._provider_timeout:
                late.append(took)
            return self._make_entry(context, plugin, asked_at)

        def adopt(context: AuthContext, plugin: str, version: str | None) -> CachedContext:
            entry = self._make_entry(context, plugin, time.monotonic())
            entry.version = version
            return entry

        scope = None if self._shared is None else self._provider_id(customer)
        try:
            if self._shared is not None and scope is not None:
                entry = self._shared.coordinate(
                    customer,
                    provider=scope,
                    stale=stale,
                    renew=renew,
                    rejected=rejected,
                    produce=produce,
                    adopt=adopt,
                    deadline=flight.deadline,
                )
            else:
                entry = produce(None if stale is None else stale.context)
        except BaseException as exc:
            error = exc if isinstance(exc, AsappAuthError) else _wrap(exc, customer)
            # Out of the table before its waiters learn the outcome: a request arriving
            # meanwhile starts a new flight rather than take this failure for its own.
            self._drop_flight(key, flight)
            flight.fail(error)
            if ahead:
                log.warning(
                    "refreshing the context of customer %r ahead of its expiry failed (%s); "
                    "the current context is used until it expires",
                    customer.id,
                    type(error).__name__,
                )
            if not isinstance(exc, Exception) and not in_thread:
                raise
            return
        with self._lock:
            # Kept even when it came too late for its waiters (a refresh token it spent is
            # gone): unless the customer was switched away, or a newer one was stored meanwhile.
            current = self._cache.get(key)
            if not flight.orphaned and (current is None or _same(current, stale)):
                self._cache.set(key, entry)
                self._refusals.discard(key)
            if self._inflight.get(key) is flight:
                del self._inflight[key]
        if late:
            flight.fail(
                ProviderTimeoutError(
                    f"the provider for customer {customer.id!r} took {late[0]:.1f}s, longer than "
                    f"provider_timeout={self._provider_timeout:g}s; its answer is kept for the "
                    "next requests",
                    customer_id=customer.id,
                )
            )
        else:
            flight.resolve(entry)
        log.debug("context for customer %r from %s", customer.id, entry.plugin)

    def _ask(
        self, customer: Customer, needs_refresh: bool, previous: AuthContext | None = None
    ) -> tuple[AuthContext, str]:
        """Call ``provide_context`` implementations in order until one answers.

        Done here rather than through pluggy's firstresult call so that errors and the cache can
        name the plugin that answered.
        """
        kwargs = {"customer": customer, "needs_refresh": needs_refresh, "previous": previous}
        call = HookCall(self._pm, "provide_context", kwargs)
        for impl in call.impls:
            name = impl.plugin_name
            source = (
                f"the context_provider of customer {customer.id!r}"
                if name == CUSTOMER_PROVIDER
                else f"plugin {name!r}"
            )
            try:
                result = call(impl)
            except LoginRequiredError:
                raise
            except ProviderError as exc:
                exc.plugin = exc.plugin or name
                exc.customer_id = exc.customer_id or customer.id
                raise
            except Exception as exc:
                raise ProviderError(
                    f"{source} raised {type(exc).__name__} while asked for a context "
                    f"(needs_refresh={needs_refresh}); see the chained exception. Nothing was "
                    "cached: the next request asks again",
                    plugin=name,
                    customer_id=customer.id,
                ) from exc
            if result is None:
                continue
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise ProviderError(
                    f"{source} returned an awaitable; providers must be plain functions that "
                    "return the context (they already run off the event loop)",
                    plugin=name,
                    customer_id=customer.id,
                )
            try:
                if isinstance(result, AuthContext):
                    context = result
                else:  # validated by AuthContext, whatever the plugin returned
                    context = AuthContext(result, source=source)  # type: ignore[arg-type]
            except InvalidContextError as exc:
                exc.plugin, exc.customer_id = name, customer.id
                raise
            return context, name
        raise NoProviderError(
            f"no provider answered for customer {customer.id!r}: give a context_provider to "
            "load()/set_customer(), or configure a provider plugin (plugins=[...])",
            customer_id=customer.id,
        )

    def _token_expired(self, customer: Customer, context: AuthContext) -> None:
        self._notify("on_token_expired", pipeline=self, customer=customer, context=context)

    # -- login ----------------------------------------------------------------------------------

    def _claim_login(
        self, op: Login
    ) -> tuple[Flight[Customer] | None, bool, Customer | None, Customer | None]:
        """Join the login in progress, start one (leader), or find a customer already set.

        The last item is the customer whose session was found gone, for the caller to report
        through ``on_customer_cleared`` outside the lock (and off the event loop).
        """
        gone: Customer | None = None
        with self._lock:
            current, generation = self._state
            if op.reason == "session_gone" and current is not None and current == op.customer:
                self._state = (None, generation + 1)
                self._forget(current)
                gone = current
                log.info("the session of customer %r is gone; now anonymous", current.id)
            elif current is not None and (generation != op.generation or op.reason == "anonymous"):
                return None, False, current, None  # a customer was set meanwhile
            if self._login is not None and not self._login.done:
                return self._login, False, None, gone
            self._login = Flight(
                self._login_timeout,
                lambda: LoginRequiredError(
                    f"a login is required and no customer was set within login_timeout="
                    f"{self._login_timeout:g}s; call set_customer() from the on_login_required "
                    "handler once the customer has logged in"
                ),
                self._drop_login,
            )
            return self._login, True, None, gone

    def _drop_login(self, flight: Flight[Customer]) -> None:
        with self._lock:
            if self._login is flight:
                self._login = None

    def _run_login(self, flight: Flight[Customer], op: Login) -> None:
        try:
            taken = self._pm.hook.on_login_required(
                pipeline=self, customer=op.customer, reason=op.reason
            )
        except LoginRequiredError as exc:
            # The handler's own account of why the login failed (a refused or timed-out login):
            # the waiting requests get it as it is.
            error = exc
        except Exception as exc:
            error = LoginRequiredError(
                f"the on_login_required handler raised {type(exc).__name__}; "
                "see the chained exception"
            )
            error.__cause__ = exc
        else:
            if taken:
                return  # set_customer completes the flight
            error = LoginRequiredError(
                "the login was declined by the on_login_required handler"
                if taken is False
                else "a login is required and no on_login_required handler took charge of it; "
                "register one, or set the customer with load()/set_customer() first"
            )
        self._drop_login(flight)  # out of reach first, as in _run: a failure is never joined
        flight.fail(error)

    def _login_sync(self, op: Login) -> Customer:
        flight, leader, current, gone = self._claim_login(op)
        if gone is not None:
            self._cleared(gone)
        if flight is None:
            assert current is not None
            return current
        if leader:
            self._run_login(flight, op)
        return flight.wait()

    async def _login_async(self, op: Login) -> Customer:
        flight, leader, current, gone = self._claim_login(op)
        if leader:
            assert flight is not None
            # In one worker, in this order, as _login_sync does: a login handler must not have
            # what it stores for the customer dropped by the clearing of the gone session.
            _spawn(self._clear_then_login, gone, flight, op)
        elif gone is not None:
            _spawn(self._cleared, gone)  # plugins may block in it (a revocation call)
        if flight is None:
            assert current is not None
            return current
        return await flight.wait_async()

    def _clear_then_login(self, gone: Customer | None, flight: Flight[Customer], op: Login) -> None:
        if gone is not None:
            self._cleared(gone)
        self._run_login(flight, op)

    # -- the httpx flow -------------------------------------------------------------------------

    def _run_op_sync(self, op: Op) -> object:
        if isinstance(op, Fetch):
            return self._fetch_sync(op)
        if isinstance(op, Rejected):
            return self._fetch_sync(Fetch(op.customer, op.entry, True, op.bound), rejected=True)
        if isinstance(op, Login):
            return self._login_sync(op)
        return op.response.read()

    async def _run_op_async(self, op: Op) -> object:
        if isinstance(op, Fetch):
            return await self._fetch_async(op)
        if isinstance(op, Rejected):
            fetch = Fetch(op.customer, op.entry, True, op.bound)
            return await self._fetch_async(fetch, rejected=True)
        if isinstance(op, Login):
            return await self._login_async(op)
        return await op.response.aread()

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


def _same(entry: CachedContext, other: CachedContext | None) -> bool:
    """The same context: the same entry, or a shared cache's copy of the same version (a copy
    read again from Redis is a new entry of the context the server may have just refused)."""
    return entry is other or (
        other is not None and entry.version is not None and entry.version == other.version
    )


def _wrap(exc: BaseException, customer: Customer) -> ProviderError:
    error = ProviderError(
        f"asking for the context of customer {customer.id!r} was interrupted "
        f"({type(exc).__name__}); the next request asks again",
        customer_id=customer.id,
    )
    error.__cause__ = exc
    return error


# At most this many providers and login handlers run at once off an event loop. A burst of
# refreshes for many customers, started by one loop at the same instant, otherwise opens as many
# token calls at once; 100 of them through one plugin's httpx client were seen to fail (a pooled
# connection used after another thread closed it). The others wait their turn, within their
# provider_timeout, as they would for asyncio.to_thread's bounded executor.
_WORKERS = threading.BoundedSemaphore(16)


def _spawn(target: Callable[..., None], *args: object, bounded: bool = True) -> None:
    # A daemon thread per slow operation: refreshes are rare, and a provider that hangs must
    # neither block interpreter exit nor the shutdown of an event loop's default executor.
    # ``bounded=False``: the target takes a _WORKERS slot itself, only around the provider call,
    # so waiting for another process (a shared cache's lock) holds up no other customer.
    threading.Thread(
        target=_bounded if bounded else target,
        args=(target, *args) if bounded else args,
        daemon=True,
        name="asapp-auth-provider",
    ).start()


def _bounded(target: Callable[..., None], *args: object) -> None:
    with _WORKERS:
        target(*args)
