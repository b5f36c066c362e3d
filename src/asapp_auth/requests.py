"""asapp-auth for ``requests``: ``session.auth = RequestsAuth(pipeline)``.

``pip install 'asapp-auth[requests]'``. A ``requests`` auth is called once per request, before
it is sent; everything after that goes through the response hook it registers, which requests
calls for every response, each redirect hop included:

- a 401 runs the flow (refresh or login) and sends the same request object again, so a redirect
  that follows the retry starts from the fresh context (requests follows redirects from the
  request it was given, not from one an auth sent itself);
- before requests follows a redirect to an origin that is not configured, the hook takes off
  every header and cookie the pipeline put on the request it is about to copy, and refuses a hop
  that would carry a context merged into the body (``RedirectBlockedError``);
- requests drops ``Cookie`` on every hop and rebuilds it from its jars, so on a hop to the same
  origin the hook puts the context's cookies in that request's own jar (never the session's);
- requests builds a hop as a copy of the request before it, so on a hop within the origins the
  hook puts on that request a proof (``request_proof``) made for the hop's method and URL, and
  gives the request its own proof back when the hop's response comes.
"""

from __future__ import annotations

from collections.abc import Generator
from http.cookiejar import Cookie
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin, urlparse

import requests
from requests.auth import AuthBase
from requests.models import REDIRECT_STATI
from requests.sessions import SessionRedirectMixin
from requests.utils import requote_uri
from urllib3.util import parse_url

from . import _flow, _telemetry
from ._requests_hop import next_hop_origin
from ._wire import Wire, is_json, register_access, target_keys
from .attach import Attachment
from .classify import REFUSALS
from .errors import RedirectBlockedError
from .origins import _DEFAULT_PORTS, Origin, format_origin, htu_of
from .pipeline import AuthPipeline, CustomerAuth, adapter_target

__all__ = ["RequestsAuth"]

# A hook keyword requests did not pass: left out when the request is sent again.
_UNSET: Any = object()
_Lent = tuple[requests.PreparedRequest, list[tuple[str, str]], tuple[str, ...]]
# requests' own reading of a redirect (its target, the hop's method): it keeps no state.
_REDIRECTS = SessionRedirectMixin()
# Prefixes ("scheme://netloc") already judged, for the cached path: a dict lookup instead of
# parsing every URL. Bounded: cleared when full.
_PREFIXES_MAX = 1024


def _origin(url: str) -> Origin:
    parsed = parse_url(url)
    scheme = (parsed.scheme or "").lower()
    host = (parsed.host or "").lower().strip("[]")
    return (scheme, host, parsed.port or _DEFAULT_PORTS.get(scheme, 0))


def _start(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host[:port]/``, as requests begins a prepared URL to that origin."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}{'' if port is None else f':{port}'}/"


class _RequestsWire(Wire[requests.PreparedRequest, requests.Response]):
    name = "requests"

    def __init__(self, pipeline: AuthPipeline) -> None:
        super().__init__(pipeline)
        self._keys = target_keys(self.origins)
        self._prefixes: dict[str, bool] = {}
        # How requests writes a configured origin at the start of a prepared URL: scheme and
        # host lowercased, the path at least "/", the port as the caller gave it (or none).
        self._starts = tuple(_start(*key) for key in self._keys)

    def is_target(self, request: requests.PreparedRequest) -> bool:
        url = request.url or ""
        if url.startswith(self._starts):
            return True
        end = url.find("/", url.find("//") + 2)
        prefix = url if end < 0 else url[:end]
        known = self._prefixes.get(prefix)
        if known is None:
            known = _origin(url) in self.origins
            if len(self._prefixes) >= _PREFIXES_MAX:
                self._prefixes.clear()
            self._prefixes[prefix] = known
        return known

    def origin(self, request: requests.PreparedRequest) -> Origin:
        return _origin(request.url or "")

    def replayable(self, request: requests.PreparedRequest) -> bool:
        return request.body is None or isinstance(request.body, bytes | str)

    def status(self, response: requests.Response) -> int:
        return response.status_code

    def challenges(self, response: requests.Response) -> list[str]:
        raw = getattr(response.raw, "headers", None)
        getlist = getattr(raw, "getlist", None)
        if getlist is not None:  # urllib3 keeps repeated headers apart; requests joins them
            return list(getlist("www-authenticate"))
        value = response.headers.get("www-authenticate")
        return [] if value is None else [value]

    def read_body(self, response: requests.Response) -> object:
        return response.content


class _RequestsBody:
    def json_body(self, request: requests.PreparedRequest) -> bytes | None:
        body = request.body
        if not is_json(request.headers.get("content-type")):
            return None
        if isinstance(body, str):
            return body.encode()
        return body if isinstance(body, bytes) else None

    def set_body(self, request: requests.PreparedRequest, body: bytes) -> None:
        request.body = body
        request.headers["Content-Length"] = str(len(body))

    def snapshot(self, request: requests.PreparedRequest) -> object:
        return (request.headers.copy(), request.body)

    def body_changed(self, request: requests.PreparedRequest, snapshot: Any) -> bool:
        return request.body is not snapshot[1]

    def restore(self, request: requests.PreparedRequest, snapshot: Any) -> None:
        headers, body = snapshot
        request.headers = headers.copy()
        request.body = body


register_access(requests.PreparedRequest, _RequestsBody())


class RequestsAuth(AuthBase):
    """A ``requests`` auth for an ``AuthPipeline``, or for one fixed customer of it
    (``RequestsAuth(pipeline.for_customer(id))``)."""

    def __init__(self, auth: AuthPipeline | CustomerAuth) -> None:
        self.pipeline, self._bound = adapter_target(auth, "RequestsAuth")
        self._wire = _RequestsWire(self.pipeline)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        sent = _flow.fast(self._wire, request, self._bound)
        if sent is None:
            return request
        exchange = _Exchange(self, sent or None)
        if not sent:
            exchange.start(request)  # fetch first: requests sends the request once we return
        # What register_hook does for a callable, without its isinstance(hook, Callable).
        request.hooks["response"].append(exchange)
        return request

    def __repr__(self) -> str:
        return f"RequestsAuth({self.pipeline!r})"


class _Exchange:
    """One request's state across its responses (retries and redirect hops), as the response
    hook that requests calls for each of them. ``state`` is what is on the request last sent:
    (customer, generation, entry, attachment); ``steps``, a flow waiting for a response."""

    __slots__ = ("_auth", "_left", "_lent", "state", "steps")

    def __init__(self, auth: RequestsAuth, state: Any) -> None:
        self._auth = auth
        self.state = state
        self.steps: Generator[Any, Any, Any] | None = None
        # Set once a redirect left the platform's origins: nothing of ours goes further.
        self._left = False
        # A request whose headers hold the proof made for the hop copied from it: the request, its
        # own proof headers, and the names of the hop's.
        self._lent: _Lent | None = None

    def start(self, request: requests.PreparedRequest) -> None:
        auth = self._auth
        self.steps = _flow.flow(auth._wire, request, auth._bound, None, None)
        item = _flow.advance_sync(auth._wire, self.steps, None)
        assert not isinstance(item, _flow.Done), "a flow sends its request before it ends"

    def __call__(
        self,
        response: requests.Response,
        *,
        # What Session.send passes every hook, as parameters: packing them into a dict for
        # each response costs more than the rest of the cached path's hook.
        stream: Any = _UNSET,
        timeout: Any = _UNSET,
        verify: Any = _UNSET,
        cert: Any = _UNSET,
        proxies: Any = _UNSET,
        **more: Any,
    ) -> requests.Response:
        if self._lent is not None:
            self._give_back()
        if self._left:
            return response
        auth = self._auth
        pipeline, wire = auth.pipeline, auth._wire
        if self.steps is None and pipeline._default_rules and response.status_code not in REFUSALS:
            # The cached path's answer: nothing to do unless it is a redirect to follow.
            if response.status_code in REDIRECT_STATI:
                return self._guard(response)
            return response
        request: requests.PreparedRequest = response.request
        if self.steps is None:
            if not wire.is_target(request):
                return response
            steps = _flow.flow(wire, request, auth._bound, self.state, response)
            first = None  # the flow starts from the response in hand
        else:
            steps, first = self.steps, response
        given = {"stream": stream, "timeout": timeout, "verify": verify, "cert": cert}
        given["proxies"] = proxies
        kwargs = {name: value for name, value in given.items() if value is not _UNSET}
        kwargs.update(more)
        try:
            item = _flow.advance_sync(wire, steps, first)
            while not isinstance(item, _flow.Done):
                response = _send_again(response, item, kwargs)
                item = _flow.advance_sync(wire, steps, response)
        except BaseException:
            response.close()  # raised instead of returned: nobody else will release it
            raise
        finally:
            self.steps = None
            steps.close()
        self.state = item.state
        return self._guard(response)

    def _guard(self, response: requests.Response) -> requests.Response:
        """Before requests follows a redirect, keep the context off a hop elsewhere."""
        if not response.is_redirect:
            return response
        attachment: Attachment | None = self.state[3] if self.state else None
        if attachment is None:
            return response
        request: requests.PreparedRequest = response.request
        origin = next_hop_origin(response)
        if origin is not None and origin in self._auth._wire.origins:
            if attachment.cookies:
                _cookies_into_jar(request, attachment, origin)
            if attachment.proof is not None:
                self._lend(request, response, attachment.proof, _hop_url(response))
            return response
        keeps_body = response.status_code in (307, 308)
        if attachment.in_body and keeps_body and request.body:
            response.close()
            _telemetry.count("redirect.strips", {_telemetry.OUTCOME: "blocked"})
            # Never the Location itself in the message: it is the server's, and may hold anything.
            where = "an ambiguous Location" if origin is None else format_origin(origin)
            raise RedirectBlockedError(
                f"a redirect to {where}, an origin not configured for this "
                "pipeline, would carry the context merged into the request body; the request "
                "was stopped. Add the origin to origins= if it is trusted, or disable redirects"
            )
        self._auth.pipeline._attacher.detach(request, attachment)
        _drop_our_cookies(request, attachment)
        _telemetry.count("redirect.strips", {_telemetry.OUTCOME: "removed"})
        self._left = True
        return response

    def _lend(
        self, request: requests.PreparedRequest, response: requests.Response, proof: Any, hop: str
    ) -> None:
        """Put on ``request``, which requests copies to build the hop, a proof made for the hop's
        method and URL; ``_give_back`` restores the request's own when the hop is answered."""
        headers = request.headers
        own = [(name, headers[name]) for name, _ in proof.headers if name in headers]
        if not own:
            return  # taken off with the context: nothing to prove
        probe: Any = SimpleNamespace(method=request.method)
        _REDIRECTS.rebuild_method(probe, response)
        fresh = proof.for_hop(probe.method, htu_of(hop))
        for name, _ in own:
            del headers[name]
        for name, value in fresh:
            headers[name] = value
        self._lent = (request, own, tuple(name for name, _ in fresh))

    def _give_back(self) -> None:
        assert self._lent is not None
        (request, own, lent), self._lent = self._lent, None
        headers = request.headers
        for name in lent:
            headers.pop(name, None)
        for name, value in own:
            headers[name] = value


def _hop_url(response: requests.Response) -> str:
    """The URL requests gives the hop it builds for the redirect ``response``, as
    ``Session.resolve_redirects`` writes it (the fragment aside)."""
    url = _REDIRECTS.get_redirect_target(response) or ""
    if url.startswith("//"):
        url = f"{urlparse(response.url).scheme}:{url}"
    parsed = urlparse(url)
    url = parsed.geturl()
    return requote_uri(url) if parsed.netloc else urljoin(response.url, requote_uri(url))


def _send_again(
    previous: requests.Response, request: requests.PreparedRequest, kwargs: dict[str, Any]
) -> requests.Response:
    """Send ``request`` (the same object, context replaced) on ``previous``'s adapter."""
    _ = previous.content  # read to the end, so the connection goes back to the pool
    previous.close()
    response: requests.Response = previous.connection.send(request, **kwargs)
    response.history = [*previous.history, previous]
    response.request = request
    return response


def _cookies_into_jar(
    request: requests.PreparedRequest, attachment: Attachment, origin: Origin
) -> None:
    jar = request._cookies  # type: ignore[attr-defined]
    for pair in attachment.cookies:
        name, _, value = pair.partition("=")
        jar.set_cookie(_cookie(name, value, origin[1]))


def _drop_our_cookies(request: requests.PreparedRequest, attachment: Attachment) -> None:
    jar = request._cookies  # type: ignore[attr-defined]
    ours = {pair.partition("=")[0] for pair in attachment.cookies}
    for cookie in list(jar):
        if cookie.name in ours and getattr(cookie, "_asapp", False):
            jar.clear(cookie.domain, cookie.path, cookie.name)


def _cookie(name: str, value: str, host: str) -> Cookie:
    cookie = Cookie(
        version=0,
        name=name,
        value=value,
        port=None,
        port_specified=False,
        domain=host,
        domain_specified=False,
        domain_initial_dot=False,
        path="/",
        path_specified=True,
        secure=False,
        expires=None,
        discard=True,
        comment=None,
        comment_url=None,
        rest={},
    )
    cookie._asapp = True  # type: ignore[attr-defined]
    return cookie
