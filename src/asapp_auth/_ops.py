"""The slow operations the flow asks its driver to carry out, and what the cached path leaves
for the flow to carry on from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .attach import Attachment
from .cache import CachedContext
from .customer import Customer

__all__ = ["OPS", "Fetch", "Login", "Op", "ReadBody", "Rejected", "Sent"]


@dataclass(slots=True)
class Fetch:
    customer: Customer
    stale: CachedContext | None
    needs_refresh: bool
    # True for a fixed customer (for_customer, get_context(customer=...)): never "switched away".
    bound: bool = False


@dataclass(slots=True)
class Rejected:
    customer: Customer
    entry: CachedContext
    bound: bool


@dataclass(slots=True)
class Login:
    reason: Literal["anonymous", "session_gone"]
    customer: Customer | None
    generation: int


@dataclass(slots=True)
class ReadBody:
    response: Any  # the client's own response


Op = Fetch | Rejected | Login | ReadBody
OPS = (Fetch, Rejected, Login, ReadBody)


# What the cached path put on a request, for the slow path to carry on from:
# (customer, generation, entry, attachment). A plain tuple: one is made per request.
Sent = tuple[Customer | None, int, CachedContext | None, Attachment | None]
