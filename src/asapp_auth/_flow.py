"""The decision flow of one request, for every client: attach, send, classify, refresh or log
in, retry. Sans I/O: the flow yields the requests to send and the slow operations it needs
(``_ops``); each adapter's driver sends and runs them its own way and sends the outcomes back.

``fast`` is the cached path every request takes first: a fresh context read from the cache
without a lock, attached. Only a request that needs more (nothing cached, expired, a 401 or a
431) goes through ``flow``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any, Literal

from . import _telemetry
from ._admit import head_bytes, too_large_again
from ._ops import OPS as _OPS
from ._ops import Fetch as _Fetch
from ._ops import Login as _Login
from ._ops import Op as _Op
from ._ops import ReadBody as _ReadBody
from ._ops import Rejected as _Rejected
from ._ops import Sent as _Sent
from ._rejection import returning
from ._wire import Wire
from .cache import CachedContext
from .classify import REFUSALS, Verdict, default_verdict
from .customer import Customer
from .errors import (
    AsappAuthError,
    LoginRequiredError,
    RequestNotReplayableError,
    TokenRejectedError,
)
from .origins import format_origin

if TYPE_CHECKING:
    pass

# How many times one request re-resolves its customer when it is switched under it.
_MAX_SWITCHES = 8

__all__ = [
    "Done",
    "advance_async",
    "advance_sync",
    "auth_flow_async",
    "auth_flow_sync",
    "fast",
    "flow",
]

log = logging.getLogger("asapp_auth")
_monotonic = time.monotonic


def fast(
    wire: Wire[Any, Any], request: Any, bound: Customer | None
) -> _Sent | Literal[False] | None:
    """The cached path: no lock, no I/O, no provider.

    ``None`` for a request to another origin (it gets nothing); what was attached when the
    context was fresh in the cache (or the customer is anonymous); ``False`` when the flow must
    fetch first.
    """
    if not wire.is_target(request):
        return None
    pipeline = wire.pipeline
    if bound is None:
        customer, generation = pipeline._state
        if customer is None:
            return (None, generation, None, None)
    else:
        customer, generation = bound, -1
    entry = wire.lookup(customer.cache_key)
    if entry is None:
        return False
    now = _monotonic()
    if now >= entry.expires_at:
        return False
    if now >= entry.refresh_at and not entry.ahead_started:
        pipeline._start_refresh_ahead(customer, entry)
    if _telemetry.ACTIVE is not None:
        _telemetry.ACTIVE.hit(wire.name)
    return (customer, generation, entry, wire.attach(request, entry, customer))


def _verdict(
    wire: Wire[Any, Any],
    request: Any,
    response: Any,
    customer: Customer | None,
    entry: CachedContext | None,
    *,
    attached: bool,
) -> Verdict:
    pipeline = wire.pipeline
    status = wire.status(response)
    plugins = pipeline._classifies
    if plugins is not None and status == 401:
        context = entry.context if attached and entry is not None else None
        said: Verdict | None = plugins(
            customer if attached else None, context, status, response.headers, wire.htu(request)
        )
        if said is not None:
            return said
    if pipeline._default_rules:
        return default_verdict(status, wire.challenges(response) if status == 401 else [], attached)
    verdict: Verdict | None = pipeline._classify(response, attached)
    if verdict is None:
        return default_verdict(status, wire.challenges(response), attached)
    return verdict


def flow(
    wire: Wire[Any, Any],
    request: Any,
    bound: Customer | None,
    sent: _Sent | None,
    response: Any,
) -> Generator[Any, Any, _Sent]:
    """Everything past the cached path; ``sent`` and ``response`` carry on from a request the
    cached path already sent. Yields a request to send (the driver sends back its response) or
    an operation (``_ops``; the driver sends back its result, or throws its error in). Returns
    what is on the request when it ends: (customer, generation, entry, attachment).

    With ``on_rejection="return"`` it ends, rather than raise, on a 401 it cannot resolve: the
    driver then returns that response, as for any other final answer (``_rejection``).
    """
    steps = _steps(wire, request, bound, sent, response)
    if wire.pipeline._returns_rejections:
        return returning(steps, wire, answered=response is not None)
    return steps


def _steps(
    wire: Wire[Any, Any],
    request: Any,
    bound: Customer | None,
    sent: _Sent | None,
    response: Any,
) -> Generator[Any, Any, _Sent]:
    pipeline = wire.pipeline
    refreshed = logged_in = retried = False
    switches = 0
    # Sends of this request so far: each one after the first is a resend (after a 401).
    sends = 0 if response is None else 1
    customer, generation, entry, attachment = sent or (None, 0, None, None)
    fixed = bound is not None
    while True:
        if response is None:
            entry_of = customer
            customer, generation = (bound, -1) if bound is not None else pipeline._state
            attachment = None
            if entry_of is not customer:
                entry = None  # that entry was another customer's
            if customer is not None:
                if entry is None:
                    entry = pipeline._cache.get(customer.cache_key)
                    now = time.monotonic()
                    if entry is not None and now < entry.expires_at:
                        _telemetry.hit(wire.name)
                    else:
                        _telemetry.count("cache.misses", {_telemetry.ADAPTER: wire.name})
                        renew = entry is not None and now >= entry.valid_until
                        try:
                            entry = yield _Fetch(customer, entry, renew, fixed)
                        except LoginRequiredError:
                            if logged_in or fixed:
                                raise
                            logged_in = True
                            entry = None
                            yield _Login("session_gone", customer, generation)
                            continue
                        if bound is None and pipeline._state[0] is not customer:
                            # The customer was switched while its context was fetched.
                            switches += 1
                            if switches > _MAX_SWITCHES:
                                raise AsappAuthError(
                                    "the customer kept changing while a request was made"
                                )
                            entry = None
                            continue
                assert entry is not None
                attachment = wire.attach(request, entry, customer)
            if sends:
                wire.resent(request, sends)
            sends += 1
            response = yield request
        status = wire.status(response)
        if pipeline._default_rules and status not in REFUSALS:
            return (customer, generation, entry, attachment)
        if wire.answered_elsewhere(request, response):
            # A redirect took the request to another origin, which carried nothing of ours:
            # its 401 says nothing about our context. Handed back as it is.
            return (customer, generation, entry, attachment)
        if not pipeline._default_rules and status in pipeline._reads_body_on:
            yield _ReadBody(response)
        verdict = _verdict(
            wire, request, response, customer, entry, attached=attachment is not None
        )
        response = None
        if verdict is Verdict.RETRY and not retried:
            # Same context, a fresh per-request part (a plugin took a server nonce for it).
            retried = True
            if attachment is not None:
                wire.detach(request, attachment)
            _check_replayable(wire, request, customer)
            continue
        if verdict is Verdict.OK or verdict is Verdict.RETRY:
            return (customer, generation, entry, attachment)
        if verdict is Verdict.TOKEN_EXPIRED and customer is not None and entry is not None:
            _telemetry.count("rejections", {_telemetry.ADAPTER: wire.name})
            head = head_bytes(request.headers) if status == 431 else 0
            if attachment is not None:
                wire.detach(request, attachment)
            if refreshed:
                origin = format_origin(wire.origin(request))
                raise TokenRejectedError(
                    too_large_again(origin, customer.id, head)
                    if status == 431
                    else f"{origin} rejected the context of customer {customer.id!r} again "
                    f"(HTTP {status}) right after it was refreshed; check what the provider "
                    "returns and what the platform expects",
                    origin=origin,
                    status_code=status,
                    customer_id=customer.id,
                )
            refreshed = True
            if not fixed and pipeline._state[0] is not customer:
                # Switched away meanwhile: the new customer's context goes on the retry, and
                # nobody asks the old customer's provider again.
                entry = None
                _check_replayable(wire, request, customer)
                continue
            try:
                entry = yield _Rejected(customer, entry, fixed)
            except LoginRequiredError:
                if logged_in or fixed:
                    raise
                logged_in = True
                entry = None
                yield _Login("session_gone", customer, generation)
            _check_replayable(wire, request, customer)
            continue
        if verdict is Verdict.LOGIN_REQUIRED:
            if attachment is not None:
                wire.detach(request, attachment)
            if logged_in or bound is not None:
                raise LoginRequiredError(
                    f"{format_origin(wire.origin(request))} requires a login"
                    + (" for this customer" if bound is not None else " even after one")
                    + f" (HTTP {status})",
                    customer_id=None if customer is None else customer.id,
                )
            logged_in = True
            reason: Literal["anonymous", "session_gone"] = (
                "anonymous" if customer is None else "session_gone"
            )
            entry = None
            yield _Login(reason, customer, generation)
            _check_replayable(wire, request, customer)
            continue
        return (customer, generation, entry, attachment)


def _check_replayable(wire: Wire[Any, Any], request: Any, customer: Customer | None) -> None:
    if not wire.replayable(request):
        raise RequestNotReplayableError(
            f"{wire.where(request)} had to be sent again "
            f"{'with a refreshed context' if customer else 'after a login'}, but its body is a "
            "stream that was already consumed; the context is ready: send the request again, or "
            "give the body as bytes"
        )


class Done:
    """The end of a flow: what is on the request (see ``flow``)."""

    __slots__ = ("state",)

    def __init__(self, state: _Sent) -> None:
        self.state = state


def advance_sync(wire: Wire[Any, Any], steps: Generator[Any, Any, _Sent], value: Any) -> Any:
    """Send ``value`` into the flow (``None`` to start it) and run the operations it asks for
    in this thread, until it yields a request to send (returned) or ends (``Done``)."""
    try:
        item = steps.send(value)
        while isinstance(item, _OPS):
            try:
                result = _run_sync(wire, item)
            except AsappAuthError as exc:
                item = steps.throw(exc)
            else:
                item = steps.send(result)
        return item
    except StopIteration as stop:
        return Done(stop.value)


async def advance_async(wire: Wire[Any, Any], steps: Generator[Any, Any, _Sent], value: Any) -> Any:
    """As ``advance_sync``, on an event loop: providers and logins run in worker threads."""
    try:
        item = steps.send(value)
        while isinstance(item, _OPS):
            try:
                result = await _run_async(wire, item)
            except AsappAuthError as exc:
                item = steps.throw(exc)
            else:
                item = steps.send(result)
        return item
    except StopIteration as stop:
        return Done(stop.value)


# The two drivers differ only in how they wait: every decision is the flow's or the pipeline's.
def _run_sync(wire: Wire[Any, Any], op: _Op) -> object:
    pipeline = wire.pipeline
    if isinstance(op, _Fetch):
        return pipeline._fetch_sync(op)
    if isinstance(op, _Rejected):
        fetch = _Fetch(op.customer, op.entry, True, op.bound)
        return pipeline._fetch_sync(fetch, rejected=True)
    if isinstance(op, _Login):
        return pipeline._login_sync(op)
    return wire.read_body(op.response)


async def _run_async(wire: Wire[Any, Any], op: _Op) -> object:
    pipeline = wire.pipeline
    if isinstance(op, _Fetch):
        return await pipeline._fetch_async(op)
    if isinstance(op, _Rejected):
        fetch = _Fetch(op.customer, op.entry, True, op.bound)
        return await pipeline._fetch_async(fetch, rejected=True)
    if isinstance(op, _Login):
        return await pipeline._login_async(op)
    return await wire.aread_body(op.response)


def auth_flow_sync(
    wire: Wire[Any, Any], request: Any, bound: Customer | None
) -> Generator[Any, Any, None]:
    """An httpx-style ``sync_auth_flow`` (httpx, httpx2): the cached path inline; past it, the
    flow's requests are yielded to the client and its operations run in this thread."""
    pipeline = wire.pipeline
    sent = fast(wire, request, bound)
    if sent is None:
        yield request
        return
    response = None
    if sent:
        response = yield request
        if pipeline._default_rules and response.status_code not in REFUSALS:
            return
    steps = flow(wire, request, bound, sent or None, response)
    try:
        item = advance_sync(wire, steps, None)
        while not isinstance(item, Done):
            item = advance_sync(wire, steps, (yield item))
    finally:
        steps.close()


async def auth_flow_async(
    wire: Wire[Any, Any], request: Any, bound: Customer | None
) -> AsyncGenerator[Any, Any]:
    """As ``auth_flow_sync``, for an async client."""
    pipeline = wire.pipeline
    sent = fast(wire, request, bound)
    if sent is None:
        yield request
        return
    response = None
    if sent:
        response = yield request
        if pipeline._default_rules and response.status_code not in REFUSALS:
            return
    steps = flow(wire, request, bound, sent or None, response)
    try:
        item = await advance_async(wire, steps, None)
        while not isinstance(item, Done):
            item = await advance_async(wire, steps, (yield item))
    finally:
        steps.close()
