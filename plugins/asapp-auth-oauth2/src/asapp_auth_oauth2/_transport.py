"""The plugin's own HTTP client: bounded retries with backoff and jitter, within a deadline, and
size-limited bodies; answers are read by ``_answers`` (RFC 6749 section 5.2 errors as typed
exceptions) and TLS failures explained by ``_tls_problems``.

It never shares the app's wrapped client: it has its own timeouts, proxy, TLS verification and
client certificate. Nothing here logs or quotes a request or response body.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from asapp_auth.errors import ProviderError

from ._answers import error_answer, json_object, retry_after_seconds
from ._settings import OAuth2Settings
from ._tls_problems import tls_problem
from .errors import (
    TLSError,
    TokenEndpointTimeoutError,
    TokenEndpointUnavailableError,
    TokenResponseError,
)

__all__ = ["HTTPResult", "Transport", "describe_endpoint"]

log = logging.getLogger("asapp_auth_oauth2")

# Failures that happen before the server can have acted on the request: always safe to retry.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after the request may have reached the server.
_MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# Statuses that say the request was not acted on; retried even for non-idempotent grants.
_NOT_PROCESSED_STATUS = frozenset({429, 503})


def describe_endpoint(url: str) -> str:
    """``url`` without query or fragment, for messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class HTTPResult:
    """A successful (2xx) answer whose body is a JSON object."""

    status_code: int
    data: dict[str, Any]


_CONNECTIONS = 20


class Transport:
    """POSTs forms and GETs JSON documents for the plugin, retrying transient failures."""

    def __init__(
        self,
        settings: OAuth2Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        client_factory: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._client_factory = client_factory or self._default_client
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        # Closed for good; the client is closed when the last request under way ends.
        self._closed = False
        self._active = 0
        # Callers beyond the pool's connections wait here, not in httpcore's sync pool: with
        # threads queued inside it, a burst of ~100 refreshes saw connections used after
        # another thread had closed them (EBADF), failing refresh-token calls that must not be
        # retried.
        self._slots = threading.BoundedSemaphore(_CONNECTIONS)

    def _default_client(self) -> httpx.Client:
        s = self._settings
        return httpx.Client(
            timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
            # A CA path and a client certificate are in ssl_context (httpx 0.28 deprecates
            # verify=<str> and cert=).
            verify=s.ssl_context if s.ssl_context is not None else s.verify,
            proxy=s.proxy,
            trust_env=s.trust_env,
            follow_redirects=False,
            headers={"User-Agent": "asapp-auth-oauth2", "Accept": "application/json"},
            # Keep-alive as large as the pool: httpcore 1.0.9's sync pool can close a connection
            # it has just assigned to a waiting request, as surplus keep-alive or to make room
            # (encode/httpcore#1110); with this and self._slots neither case arises.
            limits=httpx.Limits(
                max_connections=_CONNECTIONS, max_keepalive_connections=_CONNECTIONS
            ),
        )

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            return self._open()

    def _open(self) -> httpx.Client:
        """The client, made on first use. Holds ``_lock``."""
        if self._closed:
            raise ProviderError(
                "plugin 'oauth2' was closed (by its pipeline's close(), or its own); make a new "
                "one to ask for tokens again",
                plugin="oauth2",
            )
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def close(self) -> None:
        """Refuse new requests, and close the client once no request is under way (one in
        another thread, a revocation say, ends first rather than lose its connection)."""
        with self._lock:
            self._closed = True
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        """Close the client when closing was asked for and no request is under way."""
        with self._lock:
            client = self._client if self._closed and not self._active else None
            if client is not None:
                self._client = None
        if client is not None:
            client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        form: Mapping[str, str | Iterable[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        secrets: Iterable[str] = (),
        customer_id: str | None = None,
        what: str = "token endpoint",
        expect_json: bool = True,
        deadline: float | None = None,
        fresh_headers: Callable[[], Mapping[str, str]] | None = None,
        seen: Callable[[httpx.Headers], None] | None = None,
        budget: str = "the pipeline's provider_timeout",
    ) -> HTTPResult:
        """Send, retrying transient failures; return the JSON object of a 2xx answer.

        A 4xx answer with an RFC 6749 error raises the matching ``OAuth2Error``. When not
        ``idempotent`` (a rotating refresh token), only failures that prove the request was not
        acted on are retried. ``secrets`` are scrubbed from any text quoted back from the server.
        Without ``expect_json`` any 2xx answer is a success (RFC 7009 revocation answers).
        Every attempt, wait and retry fits before ``deadline`` (``time.monotonic()``); when the
        next would not, ``TokenEndpointTimeoutError`` is raised instead, naming the ``budget``
        the deadline comes from. ``fresh_headers`` are made anew for each attempt (a DPoP proof
        is never sent twice) and ``seen`` gets the headers of every answer (a server's DPoP
        nonce).
        """
        s = self._settings
        endpoint = describe_endpoint(url)
        secret_values = [v for v in secrets if v]
        attempts = 0
        problem = "could not be asked"

        def out_of_time(*, idempotent: bool) -> TokenEndpointTimeoutError:
            return self._out_of_time(
                what,
                endpoint,
                problem,
                attempts=attempts,
                idempotent=idempotent,
                customer_id=customer_id,
                budget=budget,
            )

        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise out_of_time(idempotent=True)
            attempts += 1
            retry_after: float | None = None
            status: int | None = None
            timed_out = False
            try:
                sending = headers
                if fresh_headers is not None:
                    sending = {**(headers or {}), **fresh_headers()}
                status, response_headers, body = self._send(method, url, form, sending, deadline)
                if seen is not None:
                    seen(response_headers)
            except _PastDeadline as exc:
                problem, timed_out = "did not answer in time", True
                retryable = idempotent or not exc.sent
            except (*_UNSENT, *_MAYBE_SENT) as exc:
                why = tls_problem(exc, what, endpoint, s)
                if why is not None:
                    raise TLSError(
                        why, endpoint=endpoint, attempts=attempts, customer_id=customer_id
                    ) from None
                timed_out = isinstance(exc, httpx.TimeoutException)
                if isinstance(exc, _UNSENT):
                    problem = f"could not connect ({type(exc).__name__})"
                    retryable = True
                else:
                    problem = f"failed mid-request ({type(exc).__name__})"
                    retryable = idempotent
            except _BodyTooLarge:
                raise TokenResponseError(
                    f"plugin 'oauth2': the {what} {endpoint} answered a body larger than "
                    f"{s.max_response_bytes} bytes; check the URL (max_response_bytes)",
                    endpoint=endpoint,
                    customer_id=customer_id,
                ) from None
            except httpx.HTTPError as exc:
                raise TokenEndpointUnavailableError(
                    f"plugin 'oauth2': the request to the {what} {endpoint} failed "
                    f"({type(exc).__name__}); check the URL and the plugin's HTTP settings",
                    endpoint=endpoint,
                    attempts=attempts,
                    customer_id=customer_id,
                ) from None
            else:
                if 200 <= status < 300 and not expect_json:
                    return HTTPResult(status, {})
                if 200 <= status < 300:
                    data = json_object(
                        body=body,
                        headers=response_headers,
                        endpoint=endpoint,
                        status=status,
                        what=what,
                        customer_id=customer_id,
                    )
                    return HTTPResult(status, data)
                if status not in _RETRY_STATUS:
                    raise error_answer(
                        body=body,
                        headers=response_headers,
                        endpoint=endpoint,
                        status=status,
                        what=what,
                        secrets=secret_values,
                        customer_id=customer_id,
                    )
                problem = f"answered HTTP {status}"
                retryable = idempotent or status in _NOT_PROCESSED_STATUS
                retry_after = retry_after_seconds(response_headers.get("retry-after"))
                if status == 429 and retry_after is not None and retry_after > s.max_retry_after:
                    raise TokenEndpointUnavailableError(
                        f"plugin 'oauth2': the {what} {endpoint} is rate limiting (HTTP 429) and "
                        f"asked to wait {retry_after:.0f} s, more than max_retry_after="
                        f"{s.max_retry_after:g} s; try again later",
                        endpoint=endpoint,
                        attempts=attempts,
                        status_code=status,
                        customer_id=customer_id,
                    )
            last_chance = not retryable or attempts > s.max_retries
            if deadline is not None and timed_out and time.monotonic() + _SLACK >= deadline:
                # Cut short by the deadline, which is what the caller needs to hear.
                raise out_of_time(idempotent=retryable)
            if last_chance:
                tail = (
                    f"after {attempts} attempts"
                    if retryable
                    else "and was not retried: the server may have acted on it"
                )
                raise TokenEndpointUnavailableError(
                    f"plugin 'oauth2': the {what} {endpoint} {problem} {tail}; "
                    "check that it is up (retries: max_retries, timeouts: timeout)",
                    endpoint=endpoint,
                    attempts=attempts,
                    status_code=status,
                    customer_id=customer_id,
                )
            delay = self._backoff(attempts)
            if retry_after is not None:
                delay = max(delay, min(retry_after, s.max_retry_after))
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise out_of_time(idempotent=True)
            log.warning(
                "plugin 'oauth2': %s %s %s; retry %d of %d in %.2f s",
                what,
                endpoint,
                problem,
                attempts,
                s.max_retries,
                delay,
            )
            self._sleep(delay)

    def _out_of_time(
        self,
        what: str,
        endpoint: str,
        problem: str,
        *,
        attempts: int,
        idempotent: bool,
        customer_id: str | None,
        budget: str,
    ) -> TokenEndpointTimeoutError:
        """``idempotent=False``: the last attempt may have reached the server, which says so."""
        s = self._settings
        acted = "" if idempotent else " (the server may have acted on it)"
        setting = budget.removeprefix("the pipeline's ")
        return TokenEndpointTimeoutError(
            f"plugin 'oauth2': the {what} {endpoint} {problem}{acted} and the time it had "
            f"({budget}) ran out after {attempts} attempt(s); make max_retries={s.max_retries} "
            f"attempts of timeout={s.timeout:g} s fit in it, or raise "
            f"{setting}",
            endpoint=endpoint,
            attempts=attempts,
            customer_id=customer_id,
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform in [c/2, c], c = min(max, base * 2**(n-1))."""
        s = self._settings
        ceiling = min(s.backoff_max, s.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def _send(
        self,
        method: str,
        url: str,
        form: Mapping[str, str | Iterable[str]] | None,
        headers: Mapping[str, str] | None,
        deadline: float | None,
    ) -> tuple[int, httpx.Headers, bytes]:
        s = self._settings
        limit = s.max_response_bytes
        data = (
            None
            if form is None
            else {k: v if isinstance(v, str) else list(v) for k, v in form.items()}
        )
        if deadline is None:
            self._slots.acquire()
        elif not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise _PastDeadline(sent=False)
        try:
            with self._lock:
                client = self._open()
                self._active += 1
        except BaseException:
            self._slots.release()
            raise
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if deadline is not None:
            # Counted after making the client: its first use loads the CA bundle.
            left = deadline - time.monotonic()
            read = max(0.001, min(s.timeout, left))
            timeout = httpx.Timeout(read, connect=max(0.001, min(s.connect_timeout, left)))
        try:
            with client.stream(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise _BodyTooLarge
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise _BodyTooLarge
                    # A server trickling its answer renews the read timeout with every chunk.
                    if deadline is not None and time.monotonic() >= deadline:
                        raise _PastDeadline(sent=True)
                    chunks.append(chunk)
                return response.status_code, response.headers, b"".join(chunks)
        finally:
            self._slots.release()
            with self._lock:
                self._active -= 1
            self._close_if_idle()


class _BodyTooLarge(Exception):
    pass


class _PastDeadline(Exception):
    """The deadline passed while waiting for a connection slot, or reading the answer."""

    def __init__(self, *, sent: bool) -> None:
        super().__init__()
        self.sent = sent


# A timeout that fires this close to the deadline was the deadline's doing.
_SLACK = 0.05
