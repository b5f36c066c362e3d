"""``Logins``: the one login in progress when a request needs a logged-in customer.

The first request that needs a login runs the ``on_login_required`` hook; every other waits on
the same ``Flight``, which ``set_customer`` completes. A session found gone clears its customer
first, in the same worker, so that a login handler's new customer is not cleared after it.
"""

from __future__ import annotations

import logging

from . import _telemetry
from ._flight import Flight
from ._ops import Login
from ._state import PipelineState
from ._workers import spawn
from .customer import Customer
from .errors import LoginRequiredError
from .logids import logged

__all__ = ["Logins"]

log = logging.getLogger("asapp_auth")


class Logins(PipelineState):
    """Claim, run and wait for the login of a customer."""

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
                log.info("the session of customer %s is gone; now anonymous", logged(current.id))
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
                expires=True,
            )
            self._login.watch = _telemetry.watch_login(op.reason)
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
            error, outcome = exc, "failed"
        except Exception as exc:
            error = LoginRequiredError(
                f"the on_login_required handler raised {type(exc).__name__}; "
                "see the chained exception"
            )
            error.__cause__ = exc
            outcome = "error"
        else:
            if taken:
                return  # set_customer completes the flight
            outcome = "declined" if taken is False else "unhandled"
            error = LoginRequiredError(
                "the login was declined by the on_login_required handler"
                if taken is False
                else "a login is required and no on_login_required handler took charge of it; "
                "register one, or set the customer with load()/set_customer() first"
            )
        self._drop_login(flight)  # out of reach first, as in _run: a failure is never joined
        if flight.watch is not None:
            flight.watch.outcome = outcome
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
            spawn(self._clear_then_login, gone, flight, op)
        elif gone is not None:
            spawn(self._cleared, gone)  # plugins may block in it (a revocation call)
        if flight is None:
            assert current is not None
            return current
        return await flight.wait_async()

    def _clear_then_login(self, gone: Customer | None, flight: Flight[Customer], op: Login) -> None:
        if gone is not None:
            self._cleared(gone)
        self._run_login(flight, op)
