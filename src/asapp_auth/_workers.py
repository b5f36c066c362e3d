"""Worker threads for the slow operations an event loop must not run: providers, logins, plugins
told that a customer was cleared."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["WORKERS", "spawn"]

# At most this many providers and login handlers run at once off an event loop. A burst of
# refreshes for many customers, started by one loop at the same instant, otherwise opens as many
# token calls at once; 100 of them through one plugin's httpx client were seen to fail (a pooled
# connection used after another thread closed it). The others wait their turn, within their
# provider_timeout, as they would for asyncio.to_thread's bounded executor.
WORKERS = threading.BoundedSemaphore(16)


def spawn(target: Callable[..., None], *args: object, bounded: bool = True) -> None:
    # A daemon thread per slow operation: refreshes are rare, and a provider that hangs must
    # neither block interpreter exit nor the shutdown of an event loop's default executor.
    # ``bounded=False``: the target takes a WORKERS slot itself, only around the provider call,
    # so waiting for another process (a shared cache's lock) holds up no other customer.
    threading.Thread(
        target=_bounded if bounded else target,
        args=(target, *args) if bounded else args,
        daemon=True,
        name="asapp-auth-provider",
    ).start()


def _bounded(target: Callable[..., None], *args: object) -> None:
    with WORKERS:
        target(*args)
