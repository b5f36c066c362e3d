"""``Flight``: one piece of work in progress whose outcome many callers wait for.

Threads wait on a ``threading.Event``; asyncio tasks, on any number of event loops, wait on a
future of their own loop that the flight completes with ``call_soon_threadsafe``. No lock is held
while anyone waits, so a cancelled task leaves nothing locked behind it: it only removes its own
future. The first ``resolve``/``fail`` wins; later ones are ignored and report ``False``.

Each waiter waits at most ``timeout`` from when it begins, then raises the timeout error while
the work goes on: a caller that joins later still gets the outcome if it comes within its own
``timeout``. A flight made with ``expires=True`` instead ends as a whole at its ``deadline``,
failing every waiter, and tells its owner through ``on_timeout``.

A failure reaches each waiter as an exception of its own (see ``_own_copy``): one object raised in
many threads and tasks would collect every waiter's frames in one traceback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Flight"]


class Flight(Generic[T]):
    __slots__ = (
        "_error",
        "_event",
        "_expires",
        "_lock",
        "_loops",
        "_on_timeout",
        "_timeout",
        "_timeout_error",
        "_value",
        "deadline",
        "orphaned",
        "queued",
        "watch",
    )

    def __init__(
        self,
        timeout: float,
        timeout_error: Callable[[], BaseException],
        on_timeout: Callable[[Flight[T]], None] | None = None,
        *,
        expires: bool = False,
    ) -> None:
        self._timeout = timeout
        # When its first caller stops waiting; for an expiring flight, when it ends.
        self.deadline = time.monotonic() + timeout
        self._expires = expires
        # Set when the work's result must not be stored (its customer was switched away).
        self.orphaned = False
        # Set by the owner while the work waits for a thread to run in, so a waiter that times
        # out meanwhile can say so.
        self.queued = False
        # Told the outcome when the flight ends (``finished(error)``): its telemetry, if any.
        self.watch: Any = None
        self._timeout_error = timeout_error
        self._on_timeout = on_timeout
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._loops: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def resolve(self, value: T) -> bool:
        return self._finish(value, None)

    def fail(self, error: BaseException) -> bool:
        return self._finish(None, error)

    def _finish(self, value: T | None, error: BaseException | None) -> bool:
        with self._lock:
            if self._event.is_set():
                return False
            self._value, self._error = value, error
            self._event.set()
            waiters, self._loops = self._loops, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: its waiter is gone with it
                pass
        if self.watch is not None:
            self.watch.finished(error)
        return True

    def _outcome(self) -> T:
        if self._error is not None:
            raise _own_copy(self._error)
        return self._value  # type: ignore[return-value]

    def expire(self) -> None:
        """End the flight with the timeout error, unless an outcome is already known."""
        if self._event.is_set():
            return
        # The callback takes the flight out of its owner's table before it fails, so that no
        # caller arriving meanwhile joins a flight whose outcome is already known.
        if self._on_timeout is not None:
            self._on_timeout(self)
        self.fail(self._timeout_error())

    def _until(self) -> float:
        return self.deadline if self._expires else time.monotonic() + self._timeout

    def _timed_out(self) -> T:
        if self._expires:
            self.expire()
        elif not self._event.is_set():
            raise self._timeout_error()  # this waiter's alone: the work goes on
        return self._outcome()

    def wait(self) -> T:
        """Block until the outcome is known or this wait times out; return or raise it."""
        if not self._event.wait(max(0.0, self._until() - time.monotonic())):
            return self._timed_out()
        return self._outcome()

    async def wait_async(self) -> T:
        """Await the outcome on the running loop, without blocking it."""
        if self._event.is_set():
            return self._outcome()
        until = self._until()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._event.is_set():
                self._loops.append((loop, future))
        if self._event.is_set() and not future.done():
            future.set_result(None)
        timed_out = False
        try:
            async with asyncio.timeout(max(0.0, until - time.monotonic())):
                await future
        except TimeoutError:
            timed_out = True
        finally:
            if not future.done():
                future.cancel()
            with self._lock:
                try:
                    self._loops.remove((loop, future))
                except ValueError:
                    pass
        if timed_out:
            return self._timed_out()
        return self._outcome()


def _own_copy(error: BaseException) -> BaseException:
    """A new exception of ``error``'s type, with its arguments, attributes, cause and context.

    Its traceback starts with the frames ``error`` was raised through (the provider's, the same
    for every copy) and grows only with the frames of the waiter that raises it.
    """
    cls = type(error)
    try:
        copy = cls.__new__(cls, *error.args)
        copy.__dict__.update(vars(error))
    except Exception:  # an exception type that cannot be built this way: share it, as before
        return error
    copy.args = error.args
    copy.__cause__ = error.__cause__
    copy.__context__ = error.__context__
    copy.__suppress_context__ = error.__suppress_context__
    return copy.with_traceback(error.__traceback__)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
