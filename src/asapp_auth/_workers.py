"""Worker threads for the slow operations an event loop must not run: providers, logins, plugins
told that a customer was cleared or that the pipeline closes, and their bound.

Each slow operation gets a daemon thread of its own: refreshes are rare, and a provider that hangs
must neither block interpreter exit nor the shutdown of an event loop's default executor. At most
``LIMIT`` of them run a provider or a login handler at once in a process: a burst of refreshes for
many customers, started by one loop at the same instant, otherwise opens as many token calls at
once (100 of them through one plugin's httpx client were seen to fail, a pooled connection used
after another thread closed it). A provider call waits for a slot until its request's deadline
and is then given up unasked.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._flight import Flight

__all__ = ["LIMIT", "off_loop", "provider_slot", "spawn"]

LIMIT = 16
_SLOTS = threading.BoundedSemaphore(LIMIT)


def spawn(target: Callable[..., object], *args: object, bounded: bool = True) -> None:
    """Run ``target(*args)`` in a new daemon thread, holding a slot throughout when ``bounded``.

    ``bounded=False``: the target takes a slot itself, only around the provider call
    (``provider_slot``), so waiting for another process (a shared cache's lock) holds up no other
    customer. It runs in a copy of the caller's context (as ``asyncio.to_thread`` does), so the
    caller's context variables, such as its current OpenTelemetry span, hold there too.
    """
    run = contextvars.copy_context().run
    threading.Thread(
        target=run,
        args=(_bounded, target, *args) if bounded else (target, *args),
        daemon=True,
        name="asapp-auth-provider",
    ).start()


def _bounded(target: Callable[..., object], *args: object) -> None:
    with _SLOTS:
        target(*args)


@contextmanager
def provider_slot(flight: Flight[Any], busy: Callable[[], BaseException]) -> Iterator[None]:
    """Hold a slot for ``flight``'s provider call; raise ``busy()`` if none frees before the
    flight's deadline. ``flight.queued`` is true while it waits for one, and stays so if none
    came."""
    flight.queued = True
    if not _SLOTS.acquire(timeout=max(0.0, flight.deadline - time.monotonic())):
        raise busy()
    flight.queued = False
    try:
        yield
    finally:
        _SLOTS.release()


async def off_loop(
    target: Callable[..., object], *args: object, timeout: float | None = None, **kwargs: object
) -> bool:
    """Run ``target(*args, **kwargs)`` in a daemon thread and await it without blocking the loop.

    ``True`` once it has returned (what it raises is raised here); ``False`` when ``timeout``
    seconds passed first, and it goes on in the background.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    # Nobody may be waiting any more when it settles: mark its error as seen.
    done.add_done_callback(lambda future: future.cancelled() or future.exception())

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            target(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the loop is closed: its waiter is gone with it
            pass

    threading.Thread(target=run, daemon=True, name="asapp-auth-worker").start()
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        return False
    return True
