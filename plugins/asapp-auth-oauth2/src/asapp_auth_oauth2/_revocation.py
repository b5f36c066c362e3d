"""Revoking a cleared customer's tokens (RFC 7009), off the caller.

``clear()`` and ``set_customer()`` must neither wait for a revocation endpoint nor block an event
loop: the plugin takes the customer's tokens at once and queues them here, for one worker thread
that lives while there is work. Each job has its own deadline (``revocation_timeout`` from when it
was queued) that bounds all its attempts; closing the plugin waits for the queue, up to a bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asapp_auth.errors import ProviderError
from asapp_auth.logids import logged

if TYPE_CHECKING:
    from ._provider import OAuth2Provider

__all__ = ["MAX_PENDING", "Revocations"]

log = logging.getLogger("asapp_auth_oauth2")

# Customers queued beyond this are forgotten unrevoked (and logged): a bound on memory, and on
# what a close could have to wait for.
MAX_PENDING = 1000
_KINDS = {"refresh_token": "refresh token", "access_token": "access token"}
_BUDGET = "revocation_timeout"


@dataclass(slots=True)
class _Job:
    customer_id: str
    tokens: list[tuple[str, str]] = field(repr=False)
    deadline: float


class Revocations:
    """The plugin's revocations: ``now`` in the caller's thread, ``later`` in the worker's."""

    def __init__(self, provider: OAuth2Provider, *, max_pending: int = MAX_PENDING) -> None:
        self._provider = provider
        self._timeout = provider.settings.revocation_timeout
        self._max_pending = max_pending
        self._jobs: deque[_Job] = deque()
        self._busy = 0  # jobs the worker has taken and not finished
        self._worker: threading.Thread | None = None
        self._cond = threading.Condition()
        self._closed = False  # drained for good: the plugin is closed

    @property
    def pending(self) -> int:
        """Revocations queued or under way."""
        with self._cond:
            return len(self._jobs) + self._busy

    def now(self, customer_id: str, tokens: list[tuple[str, str]]) -> int:
        """Revoke ``tokens`` here, within ``revocation_timeout``; how many the server accepted."""
        return self._send(customer_id, tokens, time.monotonic() + self._timeout)

    def later(self, customer_id: str, tokens: list[tuple[str, str]]) -> None:
        """Queue the revocation of ``tokens`` for the worker, and return at once; once drained,
        forget them unrevoked (the plugin is closed and starts no worker)."""
        with self._cond:
            if self._closed:
                log.warning(
                    "plugin 'oauth2' is closed: the tokens of customer %s are forgotten without "
                    "being revoked",
                    logged(customer_id),
                )
                return
            if len(self._jobs) >= self._max_pending:
                log.warning(
                    "plugin 'oauth2': %d revocations are queued already; the tokens of customer "
                    "%r are forgotten without being revoked",
                    len(self._jobs),
                    customer_id,
                )
                return
            self._jobs.append(_Job(customer_id, tokens, time.monotonic() + self._timeout))
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, daemon=True, name="asapp-auth-oauth2-revoker"
                )
                self._worker.start()

    def drain(self, deadline: float) -> int:
        """Wait until the queue is done or ``deadline`` (``time.monotonic()``) passes, then drop
        what is still queued and take no more. Returns how many revocations were left, queued
        or under way."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(
                lambda: not self._jobs and not self._busy,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            left = len(self._jobs) + self._busy
            self._jobs.clear()
        return left

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    self._worker = None
                    self._cond.notify_all()
                    return
                job = self._jobs.popleft()
                self._busy += 1
            try:
                self._send(job.customer_id, job.tokens, job.deadline)
            except Exception as exc:  # the worker must go on; the kind of failure, no text
                log.warning(
                    "plugin 'oauth2': revoking the tokens of customer %s failed (%s)",
                    logged(job.customer_id),
                    type(exc).__name__,
                )
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _send(self, customer_id: str, tokens: list[tuple[str, str]], deadline: float) -> int:
        provider = self._provider
        try:
            endpoint = provider.revocation_endpoint(deadline)
            token_endpoint = provider.token_endpoint(deadline) if endpoint else None
        except ProviderError as exc:
            log.warning(
                "plugin 'oauth2': the tokens of customer %s are not revoked: %s",
                logged(customer_id),
                exc,
            )
            return 0
        if endpoint is None or token_endpoint is None:
            return 0
        revoked = 0
        for token, hint in tokens:
            form: dict[str, str] = {"token": token, "token_type_hint": hint}
            headers: dict[str, str] = {}
            try:
                scrub = [*provider._client_auth.authenticate(form, headers, token_endpoint), token]
                provider._transport.request(
                    "POST",
                    endpoint,
                    form=form,
                    headers=headers,
                    secrets=scrub,
                    customer_id=customer_id,
                    what="revocation endpoint",
                    expect_json=False,
                    deadline=deadline,
                    budget=_BUDGET,
                )
            except ProviderError as exc:
                log.warning(
                    "plugin 'oauth2': revoking the %s of customer %s failed: %s",
                    _KINDS.get(hint, hint),
                    logged(customer_id),
                    exc,
                )
            else:
                revoked += 1
        return revoked
