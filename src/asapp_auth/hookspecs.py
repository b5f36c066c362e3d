"""The hooks a plugin can implement, and the markers that declare them.

A plugin is any object (a module, a class instance) with functions marked ``@hookimpl`` whose names
are those below. An implementation may accept any subset of a hook's parameters, by name.

Order: the customer's own ``context_provider`` (given to ``load``/``set_customer``) is asked first;
then plugins registered in code with ``AuthPipeline.register``, the last registered first; then the
entry-point plugins the pipeline was configured with, in the order they were named; built-in
defaults come last. ``tryfirst=True``/``trylast=True`` on a ``@hookimpl`` move an implementation
to the front or the back of that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .classify import Verdict
    from .commands import Commands
    from .context import AuthContext
    from .customer import Customer
    from .pipeline import AuthPipeline

PROJECT_NAME = "asapp_auth"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def provide_context(
    customer: Customer, needs_refresh: bool, previous: AuthContext | None, deadline: float
) -> Mapping[str, Any] | AuthContext | None:
    """Return the agreed context dictionary that authenticates ``customer``.

    Called by the pipeline when an identified customer's context is not cached, has expired, is
    about to expire, or was rejected by the server. From synchronous code it runs in the thread of
    the request that needs it; from asyncio it runs in a worker thread, never on the event loop.
    Either way it may block (call your own servers), until ``deadline``. Concurrent requests for
    the same customer wait for one call and share its answer.

    :param customer: who the context is for; ``customer.id`` is the id the app set.
    :param needs_refresh: ``True`` when the previous context expired or was rejected: return fresh
        credentials, not the ones you returned before.
    :param previous: the newest context known for this customer (``None`` when there is none),
        with the ``state`` a provider kept in it. With a shared cache it is the fleet's newest,
        read under the fleet's refresh lock: refresh from ``previous.state`` (a rotated refresh
        token, say) rather than from what this process remembers.
    :param deadline: the ``time.monotonic()`` instant by which the pipeline needs the answer (the
        call's start plus ``provider_timeout``). A provider that does I/O fits every attempt,
        retry and backoff before it, and raises ``asapp_auth.errors.ProviderTimeoutError`` when
        they do not fit; one that does none may leave it out. Declare it ``deadline=None`` to
        also be called without it.
    :returns: a mapping such as ``{"Auth": {"Token": "..."}}``, or an ``AuthContext`` to give an
        expiry. ``None`` means "not mine": the next implementation is asked. Stops at the first
        non-``None`` result; an empty mapping is an error, not a pass. Raise
        ``asapp_auth.errors.LoginRequiredError`` when the customer's own session is gone.
    """


@hookspec(firstresult=True)
def on_login_required(
    pipeline: AuthPipeline, customer: Customer | None, reason: str
) -> bool | None:
    """Log the customer in, then call ``pipeline.set_customer(...)``.

    Called once by the pipeline, for any number of waiting requests, when an anonymous request is
    answered "login required" (``reason == "anonymous"``, ``customer`` is ``None``) or when a
    provider says the customer's own session is gone (``reason == "session_gone"``). It runs off
    the event loop and may block while the app logs the customer in; ``set_customer`` may be called
    from this or any other thread or task, now or later. The waiting requests then go on as the new
    customer; when none is set within the pipeline's ``login_timeout`` they raise
    ``LoginRequiredError``. A ``LoginRequiredError`` (or subclass) the handler raises is what the
    waiting requests raise; any other exception is chained to a ``LoginRequiredError``.

    :returns: ``True`` when this implementation took charge of the login; ``False`` when the login
        was declined (the waiting requests fail at once). ``None`` means "not mine": the next
        implementation is asked. Stops at the first non-``None`` result; when every implementation
        returns ``None`` the waiting requests fail at once with ``LoginRequiredError``.
    """


@hookspec
def on_token_expired(pipeline: AuthPipeline, customer: Customer, context: AuthContext) -> None:
    """React to the server rejecting ``customer``'s current ``context`` as expired.

    Called by the pipeline once per rejection of the cached context (a 401, or a 431 for headers
    too large), not once per waiting request, before ``provide_context`` is asked again with
    ``needs_refresh=True``. It runs where that refresh runs (the request's thread, or a worker
    thread under asyncio). Use it to drop a token cache of your own, count expiries or revoke.
    Every implementation is called; return values are ignored. An exception is logged and does
    not stop the refresh.
    """


@hookspec
def on_customer_cleared(pipeline: AuthPipeline, customer: Customer) -> None:
    """Forget, or revoke, what you hold for ``customer``: it is no longer the current customer.

    Called by the pipeline after ``clear()``, after ``set_customer()`` switched to another
    customer, and when the customer's session was found gone, in the thread that made the change
    (the worker thread of a login under asyncio). The pipeline has already dropped the customer's
    cached context. Every implementation is called; return values are ignored. An exception is
    logged and does not undo the change. Keep it short: hand slow work (a revocation call) to a
    thread of your own if the caller must not wait.
    """


@hookspec
def on_pipeline_closed(pipeline: AuthPipeline, deadline: float) -> None:
    """Release what you hold (an HTTP client, a worker thread, open files): the pipeline closes.

    Called by the pipeline once per ``close()`` or ``aclose()`` (leaving ``with`` or ``async
    with`` calls them), in the thread that closes it; under ``aclose()`` in a worker thread,
    never on the event loop. Also called for the plugins a pipeline had configured when the next
    one failed to configure, and for the ones ``asapp-auth check`` built. Finish pending work
    (queued revocations, say) by ``deadline``, a ``time.monotonic()`` instant, then release, and
    refuse work that comes later. Every implementation is called; return values are ignored. An
    exception is logged and stops no other implementation.
    """


@hookspec
def request_proof(
    customer: Customer, context: AuthContext, method: str, url: str
) -> Mapping[str, str] | None:
    """Headers made for one request from ``customer``'s cached ``context``, and never cached:
    a DPoP proof (RFC 9449), a request signature.

    Called by the pipeline, through every client adapter, just before a request that carries the
    context is sent, each retry and each redirect hop within the configured origins included;
    ``method`` is the request's (or hop's) method and ``url`` its URL without query or fragment
    (DPoP's ``htu``). It runs on the request path, on the event loop for
    async clients: keep it fast and never block. Return ``None`` to add nothing. Every
    implementation is called and their headers are added; they are taken off before a retry and
    kept off other origins like the context's own headers. With no implementation registered,
    the request path does not look for any.
    """


@hookspec(firstresult=True)
def classify_response(
    customer: Customer | None,
    context: AuthContext | None,
    status: int,
    headers: Mapping[str, str],
    url: str,
) -> Verdict | None:
    """Say what a 401 response means before the default rules do; stops at the first non-None
    result.

    Called by the pipeline, through every client adapter, for every 401 response from a
    configured origin, with the customer and context the request carried (``None`` for an
    anonymous request), the response's headers (a case-insensitive mapping) and the request's URL
    without query or fragment (to tell which server answered: a nonce is per server). Return
    ``Verdict.RETRY`` to send the request again once with the same context and a fresh
    ``request_proof`` (a server nonce to put in it, say; a second ``RETRY`` for the same request
    counts as ``OK``), ``TOKEN_EXPIRED`` or ``LOGIN_REQUIRED`` to refresh or log in, ``OK`` to hand
    the response back as it is, or ``None`` for the default rules of ``asapp_auth.classify``. It
    runs on the request path: keep it fast.
    """


@hookspec
def register_commands(commands: Commands) -> None:
    """Add subcommands to the ``asapp-auth`` command line with ``commands.add(...)``.

    Called by ``asapp-auth`` once per run, while it builds its parser, on each installed plugin
    that ``ASAPP_AUTH_PLUGINS`` allows: on the entry point's object itself (a module-level
    function of the plugin's module), not on one made from settings, so it needs none. The core
    imports no plugin module by name; this is how a plugin's commands get there.

    :param commands: ``commands.add(name, help=..., run=...)`` returns the new subcommand's
        ``argparse`` parser, to add arguments to; ``run(args)`` runs it and returns the exit
        status. ``asapp-auth NAME -h`` then works as for every command, its usage line says
        ``asapp-auth NAME``, and errors are one line starting ``asapp-auth:`` (raise
        ``asapp_auth.commands.CommandError`` for a problem with the arguments: exit 2).
    :returns: nothing: every implementation is called, and return values are ignored. One that
        raises, or takes a name that is taken, loses its commands with a one-line warning; the
        others keep theirs.
    """
