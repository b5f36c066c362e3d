"""``Wire``: what the flow needs from one HTTP client's requests and responses.

The flow (``_flow``) decides; a wire only reads and changes a client's own objects: is this
request for a platform origin, put a context on it and take it off, can its body be sent again,
what did the response say. One ``Wire`` subclass per client library lives beside its adapter
(httpx and httpx2 in ``_httpx_wire.py``, ``requests.py``, ``aiohttp.py``).

Attachers change requests through duck-typed ``request.headers`` (every client's headers take
``[name] = value``, ``get`` and ``pop``); what differs (the body, a snapshot of the whole
request) goes through a ``BodyAccess`` registered here for the client's request type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from ._proofs import Proof
from .cache import CachedContext, MemoryContextCache
from .origins import _DEFAULT_PORTS, Origin, format_origin, htu_of

if TYPE_CHECKING:
    from .customer import Customer

__all__ = ["BodyAccess", "Wire", "access_for", "register_access"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class BodyAccess(Protocol):
    """How an attacher reads and replaces one client's request body and headers."""

    def json_body(self, request: Any) -> bytes | None:
        """The body, when it is JSON already in memory; ``None`` for anything else."""

    def set_body(self, request: Any, body: bytes) -> None:
        """Replace the body (and its length) with ``body``."""

    def snapshot(self, request: Any) -> object:
        """Enough of the request to undo any change an app's attach function makes."""

    def body_changed(self, request: Any, snapshot: Any) -> bool:
        """True when the body is no longer the one at ``snapshot``."""

    def restore(self, request: Any, snapshot: Any) -> None:
        """Put the request back as it was at ``snapshot``."""


_ACCESS: dict[type, BodyAccess] = {}


def register_access(request_type: type, access: BodyAccess) -> None:
    """Make ``access`` the body access for requests of ``request_type`` (and subclasses)."""
    _ACCESS[request_type] = access


def access_for(request: object) -> BodyAccess:
    kind = type(request)
    found = _ACCESS.get(kind)
    if found is None:
        for base in kind.__mro__[1:]:
            found = _ACCESS.get(base)
            if found is not None:
                _ACCESS[kind] = found
                break
        else:
            raise TypeError(f"asapp-auth has no adapter for {kind.__name__} requests")
    return found


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def target_keys(origins: Iterable[Origin]) -> set[tuple[str, str, int | None]]:
    """Each origin as (scheme, host, port), and with no port where the port is the default:
    clients report the port of ``https://host/`` as ``None`` or as 443."""
    keys: set[tuple[str, str, int | None]] = set()
    for scheme, host, port in origins:
        keys.add((scheme, host, port))
        if port == _DEFAULT_PORTS[scheme]:
            keys.add((scheme, host, None))
    return keys


def _reader(cache: Any) -> Any:
    """The cache's ``get``; for an in-memory cache whose ``get`` is its own, the dict lookup
    behind it."""
    if isinstance(cache, MemoryContextCache) and type(cache).get is MemoryContextCache.get:
        return cache.reader
    return cache.get


class Wire(Generic[Req, Resp]):
    """One client library's requests and responses, as the flow sees them.

    ``name`` is the adapter's name in messages and metrics. Subclasses implement the methods
    that raise ``NotImplementedError``; the rest have defaults that suit most clients.
    """

    name: ClassVar[str] = "?"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.origins: frozenset[Origin] = pipeline._origins
        # Fixed for the pipeline's life; read on every request's cached path.
        self._attacher = pipeline._attacher
        self.lookup = _reader(pipeline._cache)
        # Only a client that needs a redirect guard pays a call for it on every request.
        self._guards = type(self).guard is not Wire.guard

    def is_target(self, request: Req) -> bool:
        """True when ``request`` goes to a configured origin (the cached path asks this)."""
        raise NotImplementedError

    def origin(self, request: Req) -> Origin:
        raise NotImplementedError

    def where(self, request: Req) -> str:
        """``METHOD scheme://host[:port]`` for messages: never a path or a query."""
        return f"{self.method(request)} {format_origin(self.origin(request))}"

    def method(self, request: Req) -> str:
        return str(request.method)  # type: ignore[attr-defined]

    def attach(self, request: Req, entry: CachedContext, customer: Customer) -> Any:
        """Put ``entry``'s context on ``request``, with the per-request part plugins make for it
        (``request_proof``); return the ``Attachment``."""
        prepared = entry.prepared
        if prepared is None:
            prepared = entry.prepared = self._attacher.prepare(entry.context)
        attachment = self._attacher.attach(request, prepared)
        proofs = self.pipeline._proofs
        if proofs is not None:
            extra = proofs(customer, entry.context, self.method(request), self.htu(request))
            if extra:
                headers = request.headers  # type: ignore[attr-defined]
                for name, value in extra:
                    headers[name] = value
                # A copy: a headers-only context shares one attachment between its requests.
                # No longer Authorization alone: the client would carry the proof elsewhere.
                attachment = replace(
                    attachment,
                    headers=(*attachment.headers, *extra),
                    authorization_only=False,
                    proof=Proof(proofs, customer, entry.context, extra),
                )
                attachment.guard_data = None
        if self._guards:
            self.guard(request, attachment)
        return attachment

    def htu(self, request: Req) -> str:
        """The request's URL without query or fragment (what a DPoP proof signs)."""
        return htu_of(str(request.url))  # type: ignore[attr-defined]

    def guard(self, request: Req, attachment: Any) -> None:
        """Keep ``attachment`` off redirects to other origins, as this client needs."""

    def detach(self, request: Req, attachment: Any) -> None:
        self._attacher.detach(request, attachment)

    def answered_elsewhere(self, request: Req, response: Resp) -> bool:
        """True when ``response`` came from another origin than the configured one ``request``
        went to: a client that follows redirects itself hands the last hop's answer back."""
        return False

    def replayable(self, request: Req) -> bool:
        """True when the request's body can be sent again (a retry after a refresh)."""
        raise NotImplementedError

    def resent(self, request: Req, count: int) -> None:
        """``request`` goes out again, for the ``count``-th time after its first: tell the
        client's instrumentation (``http.request.resend_count``) where it can read it."""

    def status(self, response: Resp) -> int:
        return int(response.status_code)  # type: ignore[attr-defined]

    def challenges(self, response: Resp) -> list[str]:
        """The response's ``WWW-Authenticate`` values."""
        raise NotImplementedError

    def read_body(self, response: Resp) -> object:
        """Read the whole response body, for a classifier that needs it (sync clients)."""
        raise NotImplementedError

    async def aread_body(self, response: Resp) -> object:
        """Read the whole response body, for a classifier that needs it (async clients)."""
        raise NotImplementedError
