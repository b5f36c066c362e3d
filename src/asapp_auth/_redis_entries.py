"""What the shared cache stores for a customer: a sealed record behind its generation in clear.

The value is ``"<gen>|<sealed>"``: the generation, so that scripts can compare it, then the
record (customer id, plugin, version, context, expiry, refused or not) sealed with the key ring
and bound to the key's name and generation. Expiry is stored on the clock of the node that holds
the key and told in this host's clock on reading, so hosts whose clocks differ agree on it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._redis_keys import digits, gen_of
from .cache import CachedContext
from .context import AuthContext
from .customer import Customer
from .errors import InvalidContextError
from .logids import logged
from .sealing import KeyRing, UnsealError


@dataclass(slots=True)
class Found:
    """An entry read from Redis. ``context`` is ``None`` when it could not be opened; then
    ``refused`` is the SHA-1 of the value, which the store script may replace, and ``gen`` (the
    prefix as read, -1 when malformed) only tells a later change apart: it is not trusted."""

    gen: int
    version: str
    context: AuthContext | None = None
    plugin: str = ""
    rejected: bool = False
    refused: str = ""

    @property
    def trusted_gen(self) -> int:
        """The generation to count from: 0 for an entry that could not be opened."""
        return 0 if self.refused else self.gen


@dataclass(slots=True, frozen=True)
class Clock:
    """The time on the node that holds a key (ms), read at ``at`` (this host's monotonic)."""

    redis_ms: int
    at: float

    def now_ms(self) -> int:
        return self.redis_ms + int((time.monotonic() - self.at) * 1000)


class Entries:
    """Seals records for Redis and opens them; ``warn(kind, message, *args)`` reports what it
    refuses (rate-limited by the caller), never with the value."""

    def __init__(
        self,
        ring: KeyRing,
        namespace: str,
        state_ttl: float,
        warn: Callable[..., None],
    ) -> None:
        self._ring, self._namespace, self._state_ttl, self._warn = ring, namespace, state_ttl, warn

    def open(self, raw: bytes, name: str, customer: Customer, clock: Clock) -> Found:
        refused = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
        head, bar, sealed = raw.partition(b"|")
        gen = digits(head)
        if not bar or gen < 0:
            self._warn(
                "shape",
                "an entry in Redis under namespace %r is not asapp-auth's, or its generation is "
                "out of range (tampered?); refused, and replaced under the refresh lock",
                self._namespace,
            )
            return Found(-1, "0.refused", refused=refused)
        try:
            record = json.loads(self._ring.open(sealed, f"{name}|{gen}".encode()))
            if not isinstance(record, Mapping) or record.get("customer") != customer.id:
                raise InvalidContextError("the entry is for another customer")
            plugin, version = record["plugin"], record["version"]
            if not (isinstance(plugin, str) and isinstance(version, str)) or gen_of(version) != gen:
                raise InvalidContextError("the entry's plugin or version is malformed")
            stored = dict(record["context"])
            expires_ms = record["expires_ms"]
            if expires_ms is not None:
                # Counted on Redis's clock, told in this host's: hosts' clocks may differ.
                stored["expires_ts"] = time.time() + (expires_ms - clock.now_ms()) / 1000
            context = AuthContext.from_record(stored, source="the Redis cache")
            rejected = record.get("rejected") is True
        except (UnsealError, InvalidContextError, ValueError, KeyError, TypeError) as exc:
            self._warn(
                "unusable",
                "a shared context (customer %s) could not be used (%s); treated as a miss: check "
                "that every process has the same cache.keys",
                logged(customer.id),
                exc,
            )
            return Found(gen, f"{gen}.unreadable", refused=refused)
        return Found(gen, version, context, plugin, rejected)

    def seal(
        self,
        name: str,
        customer: Customer,
        entry: CachedContext,
        clock: Clock,
        rejected: bool = False,
    ) -> tuple[bytes, int]:
        """The value to store and how long to keep it in ms (0: no limit)."""
        remaining = entry.context.remaining()
        gen = gen_of(entry.version)
        record = {
            "customer": customer.id,
            "plugin": entry.plugin,
            "version": entry.version,
            "context": entry.context.to_record(),
            "expires_ms": None if remaining is None else clock.now_ms() + int(remaining * 1000),
            "rejected": rejected,
        }
        sealed = self._ring.seal(json.dumps(record).encode(), f"{name}|{gen}".encode())
        ttl = 0 if remaining is None else max(1, int((remaining + self._state_ttl) * 1000))
        return f"{gen}|".encode() + sealed, ttl
