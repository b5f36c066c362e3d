"""The authorization code request of a native app (RFC 8252): PKCE with S256 (RFC 7636), and a
one-shot HTTP server on 127.0.0.1 that receives the redirect (RFC 8252 section 7.3).

The server listens on the loopback IP literal (never ``localhost``, section 8.3), on an ephemeral
port by default, answers one redirect to its path and stops. Nothing it receives is logged: the
query holds the authorization code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ._transport import describe_endpoint
from .errors import LoginDeniedError, LoginError, LoginTimeoutError, StateMismatchError

__all__ = ["AuthorizationCode", "authorize", "pkce_pair"]

# A stalled connection (opened, never sent) holds the one-request server this long at most.
_CONNECTION_TIMEOUT = 5.0
_MAX_FIELDS = 20
_PAGE = (
    "<!doctype html><meta charset=utf-8><title>{title}</title>"
    "<body style='font-family:sans-serif'><h1>{title}</h1><p>{text}</p></body>"
)


def pkce_pair() -> tuple[str, str]:
    """A fresh ``(code_verifier, code_challenge)``: 86 unreserved characters and their S256."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """What the redirect brought back: the code, for the redirect URI, with its PKCE verifier and
    the nonce the request sent. ``repr`` shows none of the secrets."""

    code: str = field(repr=False)
    redirect_uri: str
    code_verifier: str = field(repr=False)
    nonce: str | None = field(repr=False)


class _Server(HTTPServer):
    # One request at a time, on the loopback interface only: a redirect, not a service.
    request_queue_size = 8
    path: str
    state: str
    outcome: dict[str, str] | None = None
    problem: str | None = None
    done: threading.Event


class _Callback(BaseHTTPRequestHandler):
    server: _Server
    timeout = _CONNECTION_TIMEOUT
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line holds the authorization code

    def _page(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        if target.path != self.server.path or self.server.done.is_set():
            self._page(404, "Not found", "This is a one-time login address.")
            return
        try:
            fields = parse_qs(
                target.query,
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=_MAX_FIELDS,
            )
        except ValueError:
            fields = {}
        # RFC 6749 section 3.1: a parameter sent twice makes the response unusable.
        if not fields or any(len(values) != 1 for values in fields.values()):
            self.server.problem = "the redirect's query was empty, too long or had repeated fields"
            answer = {}
        else:
            answer = {name: values[0] for name, values in fields.items()}
        self.server.outcome = answer
        self.server.done.set()
        state = answer.get("state", "")
        if (
            answer.get("code")
            and "error" not in answer
            and hmac.compare_digest(state.encode(), self.server.state.encode())
        ):
            self._page(200, "Logged in", "You may close this window and return to the app.")
        else:
            self._page(400, "Login failed", "Return to the app to see why, and try again.")

    def do_POST(self) -> None:
        self._page(405, "Not allowed", "The login redirect is a GET.")


def _authorization_url(endpoint: str, params: dict[str, str]) -> str:
    # RFC 6749 section 3.1: the endpoint's own query is kept.
    parts = urlsplit(endpoint)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def authorize(
    *,
    authorization_endpoint: str,
    client_id: str,
    scope: str | None,
    resource: tuple[str, ...],
    openid: bool,
    issuer: str | None,
    require_iss: bool,
    port: int,
    path: str,
    open_browser: Callable[[str], object],
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> AuthorizationCode:
    """Send the customer's browser to the authorization endpoint and wait, until ``deadline``
    (``clock`` time), for the redirect to the loopback server; return its code.

    ``open_browser(url)`` runs in this thread while the server answers in another, so it may
    also drive the login page itself and return when done. A redirect with another ``state``,
    an ``error``, or an ``iss`` other than ``issuer`` (RFC 9207; required with ``require_iss``)
    ends the login with a ``LoginError``.
    """
    shown = describe_endpoint(authorization_endpoint)
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32) if openid else None
    try:
        server = _Server(("127.0.0.1", port), _Callback)
    except OSError as exc:
        raise LoginError(
            f"plugin 'oauth2': the loopback server for the login redirect could not listen on "
            f"127.0.0.1:{port} ({type(exc).__name__}); free that port or set redirect_port=0",
            endpoint=shown,
            error="loopback_unavailable",
        ) from None
    server.path, server.state, server.done = path, state, threading.Event()
    server.timeout = _CONNECTION_TIMEOUT
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}{path}"
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if scope:
        params["scope"] = scope
    if nonce is not None:
        params["nonce"] = nonce
    url = _authorization_url(authorization_endpoint, params)
    for uri in resource:
        url += "&" + urlencode({"resource": uri})
    serving = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name="asapp-auth-oauth2-loopback",
    )
    serving.start()
    try:
        try:
            opened = open_browser(url)
        except Exception as exc:
            raise LoginError(
                f"plugin 'oauth2': open_browser raised {type(exc).__name__} for the login at "
                f"{shown}; see the chained exception",
                endpoint=shown,
                error="no_browser",
            ) from exc
        if opened is False:
            raise LoginError(
                f"plugin 'oauth2': no web browser could be opened for the login at {shown}; set "
                "open_browser to show the address another way, or use login='device'",
                endpoint=shown,
                error="no_browser",
            )
        if not server.done.wait(max(0.0, deadline - clock())):
            raise LoginTimeoutError(
                f"plugin 'oauth2': no login came back from {shown} to {redirect_uri} in time "
                "(login_timeout, and the pipeline's); the next request that needs a login "
                "starts another",
                endpoint=shown,
                error="login_timeout",
            )
    finally:
        server.shutdown()
        server.server_close()
        serving.join(_CONNECTION_TIMEOUT)
    answer = server.outcome or {}
    return AuthorizationCode(
        _check(answer, server.problem, state, issuer, require_iss, shown, redirect_uri),
        redirect_uri,
        verifier,
        nonce,
    )


def _check(  # noqa: PLR0917 - private, one call site
    answer: dict[str, str],
    problem: str | None,
    state: str,
    issuer: str | None,
    require_iss: bool,
    shown: str,
    redirect_uri: str,
) -> str:
    """The code of a redirect that answers this login's request; else a ``LoginError``."""
    if problem is not None:
        raise LoginError(
            f"plugin 'oauth2': the login redirect to {redirect_uri} was refused: {problem}",
            endpoint=redirect_uri,
            error="invalid_redirect",
        )
    got = answer.get("state")
    if got is None or not hmac.compare_digest(got.encode(), state.encode()):
        raise StateMismatchError(
            f"plugin 'oauth2': the login redirect to {redirect_uri} carried "
            + ("no state, unlike" if got is None else "another state than")
            + f" the request sent to {shown}: it was not this login's answer (a forged or "
            "stale redirect) and was refused; log in again",
            endpoint=redirect_uri,
            error="state_mismatch",
        )
    iss = answer.get("iss")
    # Without a configured issuer there is nothing to compare an iss with (RFC 9207 section 2.4).
    if issuer is not None and (iss is not None or require_iss) and iss != issuer:
        raise LoginError(
            f"plugin 'oauth2': the login redirect names issuer {iss!r}, not {issuer!r} (RFC "
            "9207): the answer came from another authorization server and was refused",
            endpoint=shown,
            error="issuer_mismatch",
        )
    error = answer.get("error")
    if error is not None:
        description = answer.get("error_description")
        cls = LoginDeniedError if error == "access_denied" else LoginError
        said = f" ({_clean(description)})" if description else ""
        raise cls(
            f"plugin 'oauth2': the authorization endpoint {shown} answered "
            f"{_clean(error, 64)}{said}; the customer was not logged in",
            endpoint=shown,
            error=_clean(error, 64),
            error_description=None if description is None else _clean(description),
        )
    code = answer.get("code")
    if not code:
        raise LoginError(
            f"plugin 'oauth2': the login redirect from {shown} carried no code",
            endpoint=shown,
            error="invalid_redirect",
        )
    return code


def _clean(text: str, limit: int = 300) -> str:
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
