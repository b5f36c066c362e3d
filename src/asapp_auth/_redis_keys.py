"""What the shared cache names in Redis, and the generations it writes there.

One hash per customer and provider, ``<namespace>:{<digest>}``: its context, refresh lock and
tombstone are fields of that one key, so every script touches one key (one hash slot on Redis
Cluster: nothing is split by a reshard, and no script can get ``CROSSSLOT`` or ``TRYAGAIN``).
The braces make the digest the key's hash tag; the customer's sharded notice channel,
``<namespace>:{<digest>}:events``, carries the same tag, so a script may publish to it.
"""

from __future__ import annotations

import hashlib

from .errors import ConfigurationError

# Generations are whole numbers of at most GEN_DIGITS digits, compared exactly: Lua numbers are
# doubles, exact up to 2**53, which 15 digits stay below. A longer or malformed prefix is refused
# as tampering rather than compared (10**30 would pass for every later generation).
GEN_DIGITS = 15


def check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
        raise ConfigurationError(f"cache.namespace must be one word, not {namespace!r}")
    if "{" in namespace or "}" in namespace:
        # A brace would become every key's hash tag: the whole fleet's keys on one shard.
        raise ConfigurationError(f"cache.namespace must not hold braces, not {namespace!r}")
    return namespace


def name_of(namespace: str, provider: str, customer_id: str) -> str:
    """The customer's key: its name holds no customer id, only a hash of it and the provider."""
    digest = hashlib.sha256(f"{provider}\0{customer_id}".encode()).hexdigest()[:32]
    return f"{namespace}:{{{digest}}}"


def channel_of(name: str) -> str:
    """The customer's sharded notice channel, in its key's hash slot."""
    return f"{name}:events"


def digits(head: bytes | str) -> int:
    """A generation's digits as a number; -1 unless 1 to ``GEN_DIGITS`` ASCII digits."""
    if isinstance(head, bytes):
        head = head.decode("ascii", "replace")
    if not 0 < len(head) <= GEN_DIGITS or not head.isascii() or not head.isdigit():
        return -1
    return int(head)


def gen_of(version: str | None) -> int:
    """The generation of an entry's version (``"<gen>.<random>"``), 0 when it has none."""
    return max(0, digits(version.split(".", 1)[0])) if version else 0
