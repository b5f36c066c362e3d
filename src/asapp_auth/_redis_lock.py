"""A customer's refresh lock for the fleet: taken, kept while the provider runs, let go.

The lock is a field of the customer's hash (``asapp_auth._redis_scripts``) with a deadline of
``lock_ttl``: a holder that crashes blocks nobody for longer. It is renewed every third of that
while its holder's provider runs, however slow. A lock lost anyway (Redis restarted, a failover to
a replica that had not seen it, an eviction) is found out by the store script, which then stores
nothing: the generation check there is the fence, not the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from . import _redis_scripts as scripts
from ._redis_keys import digits
from ._redis_link import Down, RedisLink
from .customer import Customer
from .errors import ProviderTimeoutError

_POLL_FIRST, _POLL_MAX = 0.002, 0.02


class FleetLock:
    """Refresh locks on ``link``; ``call(name, what)`` runs a command for a customer's key."""

    def __init__(
        self,
        link: RedisLink,
        call: Callable[[str, Callable[[Any], Any]], Any],
        lock_ttl: float,
        count: Callable[[str], None],
    ) -> None:
        self._link, self._call, self._lock_ttl, self._count = link, call, lock_ttl, count
        self._ttl_ms = max(1, int(lock_ttl * 1000))

    def take(self, name: str, token: str, deadline: float, customer: Customer, seen: int) -> bool:
        """Take the customer's refresh lock (``True``), or return ``False`` as soon as an entry
        newer than generation ``seen`` is stored. Raises ``ProviderTimeoutError`` past
        ``deadline``."""
        pause = _POLL_FIRST
        while True:
            taken, head = self._call(
                name, lambda client: scripts.CLAIM(client, name, token, self._ttl_ms)
            )
            gen, bar, _ = bytes(head).partition(b"|")
            if taken:
                return True
            if (digits(gen) if bar else -1) > seen:
                return False
            if time.monotonic() + pause > deadline:
                raise ProviderTimeoutError(
                    f"another process kept refreshing the context of customer {customer.id!r} "
                    f"past the provider timeout; if it crashed, its lock lapses within "
                    f"lock_ttl={self._lock_ttl:g}s. Nothing was cached: the next request asks "
                    "again",
                    customer_id=customer.id,
                )
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    def keep(self, name: str, token: str) -> threading.Event:
        """Keep the lock while the provider runs; set the returned event to stop."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self._lock_ttl / 3):
                try:
                    if not scripts.RENEW(self._link.client(), name, token, self._ttl_ms):
                        return  # lost (Redis restarted, a failover): the store will find out
                except Exception:  # Redis trouble: the store will find out
                    return

        threading.Thread(target=renew, daemon=True, name="asapp-auth-redis-lock").start()
        return done

    def release(self, name: str, token: str) -> None:
        try:
            self._call(name, lambda client: scripts.RELEASE(client, name, token))
        except Down:  # the lock then lapses by itself
            self._count("fallbacks")
