"""``ContextStore``: each customer's context, in the cache and in flight.

A fetch claims the customer's ``Flight``: the first caller (the leader) asks the providers, in its
own thread when synchronous, in a worker thread under asyncio; every other caller waits for that
flight's outcome, each for its own ``provider_timeout``. The flight stays until the providers
answer, however late: one call per customer at a time, its answer kept. A refused context's
refusal is remembered (``_refusals``) until a fresh one replaces it, so the next ask after a
failed refresh is a refresh too. With a shared cache the leader hands the fetch to the cache's
``coordinate``, which decides whether this process or another one produces the context.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from . import _telemetry
from ._admit import admit
from ._flight import Flight
from ._hookcalls import HookCall
from ._ops import Fetch
from ._state import CUSTOMER_PROVIDER, PipelineState
from ._timeouts import answered_late, no_thread_free, not_answered_yet
from ._workers import LIMIT, provider_slot, spawn
from .cache import CachedContext
from .context import AuthContext
from .customer import Customer
from .errors import (
    AsappAuthError,
    InvalidContextError,
    LoginRequiredError,
    NoProviderError,
    ProviderError,
    ProviderTimeoutError,
)
from .hookspecs import hookimpl
from .logids import logged

__all__ = ["ContextStore", "CustomerProvider"]

log = logging.getLogger("asapp_auth")

# A request whose context was refused may join a fetch already in flight; with a shared cache
# that fetch can be a mere re-read that brings back the refused context. It then claims again
# (the refused copy is dropped and a refresh starts), this many times at most.
_REJOINS = 3


class CustomerProvider:
    """Serves each customer's own ``context_provider`` through ``provide_context``, first."""

    @hookimpl(tryfirst=True)
    def provide_context(
        self, customer: Customer, needs_refresh: bool
    ) -> Mapping[str, Any] | AuthContext | None:
        if customer.provider is None:
            return None
        return customer.ask(needs_refresh)


class ContextStore(PipelineState):
    """Serve, fetch, refresh and cache each customer's context, single-flight."""

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
        own = plugin == CUSTOMER_PROVIDER
        source = "the customer's context_provider" if own else f"plugin {plugin!r}"
        # Refused before anything is cached or sent. The prepared form is not kept: made again
        # on first use, it costs no memory for the customers that are cached but never served.
        admit(context, self._attacher, self._max_context_bytes, plugin, source)
        lifetime = context.expires_in
        remaining = context.remaining()
        if lifetime is None or remaining is None:
            return CachedContext(context, plugin, asked_at, math.inf, math.inf)
        if remaining <= 0:
            raise InvalidContextError(
                f"{source} returned a context that had already expired; return a fresh "
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
            if flight is not None:
                # However long it has run: one provider call per customer at a time, each
                # caller waiting on it for its own provider_timeout.
                return flight, False, None
            started: Flight[CachedContext] = Flight(
                self._provider_timeout, lambda: self._not_in_time(customer, started)
            )
            # A customer switched away from is still served to requests begun before the switch,
            # but what is fetched for it then is not kept.
            started.orphaned = not bound and customer != self._state[0]
            self._inflight[key] = started
            return started, True, None

    def _not_in_time(self, customer: Customer, flight: Flight[Any]) -> ProviderTimeoutError:
        """What a request gets when its provider_timeout passes before ``flight`` ends."""
        if flight.queued:
            return no_thread_free(customer.id, self._provider_timeout, LIMIT)
        return not_answered_yet(customer.id, self._provider_timeout)

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
                took = self._run(flight, fetch, rejected, in_thread=False)
                if took is not None:
                    # Its answer went to the cache and to the callers still waiting; this
                    # request, held up by a provider it could not interrupt, says it was late.
                    raise answered_late(fetch.customer.id, took, self._provider_timeout)
            else:
                _telemetry.count("cache.coalesced_waits")
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
                spawn(self._run, flight, fetch, rejected, True, bounded=False)
            else:
                _telemetry.count("cache.coalesced_waits")
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
            spawn(self._run, flight, fetch, False, True, True, bounded=False)

    def _run(
        self,
        flight: Flight[CachedContext],
        fetch: Fetch,
        rejected: bool,
        in_thread: bool,
        ahead: bool = False,
    ) -> float | None:
        """Ask the providers once and complete ``flight`` with the outcome.

        Returns how long the provider took when that was longer than ``provider_timeout``.
        """
        customer, stale = fetch.customer, fetch.stale
        key = customer.cache_key
        renew = fetch.needs_refresh or rejected
        if rejected:
            # Here, once per refresh, rather than once per request that the platform refused.
            log.info("the context of customer %s was rejected; refreshing", logged(customer.id))
        with self._lock:
            refused = self._refusals.get(key)
        if refused is not None:
            # The last context was refused and its refresh failed: this ask is a refresh too,
            # from that context (its state may hold what the refresh needs).
            renew = True
            stale = stale or refused

        late: list[float] = []
        # The provider call's telemetry, whose bounded plugin label a failure is counted under.
        calls: list[_telemetry.ProviderCall] = []

        def busy() -> BaseException:
            return no_thread_free(customer.id, self._provider_timeout, LIMIT)

        def produce(previous: AuthContext | None, refresh: bool = renew) -> CachedContext:
            if rejected and stale is not None:
                self._token_expired(customer, stale.context)
            # Off an event loop, a bounded number of providers run at once (see _workers).
            with provider_slot(flight, busy) if in_thread else contextlib.nullcontext():
                asked_at = time.monotonic()
                with _telemetry.provider_call(refresh) as call:
                    calls.append(call)
                    context, plugin = self._ask(customer, refresh, previous, flight.deadline, call)
            took = time.monotonic() - asked_at
            if took > self._provider_timeout:
                late.append(took)
            return self._make_entry(context, plugin, asked_at)

        def adopt(context: AuthContext, plugin: str, version: str | None) -> CachedContext:
            entry = self._make_entry(context, plugin, time.monotonic())
            entry.version = version
            return entry

        scope = None if self._shared is None else self._provider_id(customer)
        reason = _telemetry.refresh_reason(ahead, rejected or refused is not None, stale is None)
        try:
            _telemetry.count("refreshes", {_telemetry.REASON: reason})
            with _telemetry.operation("refresh", {_telemetry.REASON: reason}):
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
            _telemetry.fetch_failed(error, calls[-1] if calls else None)
            # Out of the table before its waiters learn the outcome: a request arriving
            # meanwhile starts a new flight rather than take this failure for its own.
            self._drop_flight(key, flight)
            flight.fail(error)
            if ahead:
                log.warning(
                    "refreshing the context of customer %s ahead of its expiry failed (%s); "
                    "the current context is used until it expires",
                    logged(customer.id),
                    type(error).__name__,
                )
            if not isinstance(exc, Exception) and not in_thread:
                raise
            return None
        with self._lock:
            # Kept even when it came too late for its waiters (a refresh token it spent is
            # gone): unless the customer was switched away, or a newer one was stored meanwhile.
            current = self._cache.get(key)
            if not flight.orphaned and (current is None or _same(current, stale)):
                self._cache.set(key, entry)
                self._refusals.discard(key)
            if self._inflight.get(key) is flight:
                del self._inflight[key]
        # Late or not, to every caller still waiting (each within its own timeout).
        flight.resolve(entry)
        log.debug("context for customer %s from %s", logged(customer.id), entry.plugin)
        return late[0] if late else None

    def _ask(
        self,
        customer: Customer,
        needs_refresh: bool,
        previous: AuthContext | None,
        deadline: float,
        asking: _telemetry.ProviderCall,
    ) -> tuple[AuthContext, str]:
        """Call ``provide_context`` implementations in order until one answers, telling
        ``asking`` (telemetry) the label of each plugin asked.

        Done here rather than through pluggy's firstresult call so that errors and the cache can
        name the plugin that answered.
        """
        kwargs = {
            "customer": customer,
            "needs_refresh": needs_refresh,
            "previous": previous,
            "deadline": deadline,
        }
        call = HookCall(self._pm, "provide_context", kwargs)
        for impl in call.impls:
            name = impl.plugin_name
            asking.plugin = _telemetry.plugin_label(name, impl.plugin)
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
                if exc.plugin is not None and exc.plugin in self._plugin_labels():
                    asking.plugin = exc.plugin
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
                asking.plugin = "none"
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

    def _plugin_labels(self) -> set[str]:
        """The names a plugin's own error may give telemetry: the ones plugins are registered
        under, never pluggy's object ids."""
        return {name for name, _ in self._pm.list_name_plugin() if not name.isdigit()}

    def _token_expired(self, customer: Customer, context: AuthContext) -> None:
        self._notify("on_token_expired", pipeline=self, customer=customer, context=context)


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
