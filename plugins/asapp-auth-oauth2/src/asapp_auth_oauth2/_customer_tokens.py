"""What the plugin holds for each customer, under one lock: its refresh token (and when the app
gave it), the refresh tokens already spent, a whole token the app gave, and its token calls
under way.

The access tokens themselves are in the token cache (``_cache``); clearing a customer takes both.
A token call under way when its customer is cleared must not bring the customer back: clearing
takes the call's answer when it is in, and marks the call otherwise, whose answer is then the
cleared session's.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cachetools

from asapp_auth.errors import ProviderError, type_with_article
from asapp_auth.logids import logged

from ._response import TokenResponse
from .errors import SessionGoneError

__all__ = ["CustomerTokens", "Fetching", "digest", "hand_to_app"]

log = logging.getLogger("asapp_auth_oauth2")


def digest(value: str) -> str:
    """A token's SHA-256, hex: what is kept of a token that must be recognised, not sent."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hand_to_app(
    callback: Callable[[str, Any], object], name: str, customer_id: str, new: object, what: str
) -> None:
    """Give the app's ``name`` callback the customer's ``new`` token (``what`` it is, for the
    log); one that raises is logged by its type, and the token stays in memory only."""
    try:
        callback(customer_id, new)
    except Exception as exc:
        log.warning(
            "plugin 'oauth2': %s raised %s for customer %s; the new %s is kept in memory only",
            name,
            type(exc).__name__,
            logged(customer_id),
            what,
        )


@dataclass(eq=False, slots=True)
class Fetching:
    """A customer's token-endpoint call under way. ``cleared`` once its customer is cleared
    before its answer was in; the answer is then revoked when ``revoke``, and never kept."""

    response: TokenResponse | None = None
    cleared: bool = False
    revoke: bool = False


class CustomerTokens:
    """Each customer's refresh token, given token and token calls; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refresh_tokens: dict[str, str] = {}
        # When the app last gave each customer's refresh token (wall clock): newer than a
        # context made before then, whose state holds an older one.
        self._seeded_at: dict[str, float] = {}
        # Digests of refresh tokens already spent (rotated away or refused): never sent again.
        self._spent: cachetools.LRUCache[str, bool] = cachetools.LRUCache(100_000)
        # Access tokens the app gave with set_token, and when they expire (monotonic clock):
        # put in the token cache at the customer's next request, when its key is known.
        self._given: dict[str, tuple[TokenResponse, float]] = {}
        self._fetching: dict[str, list[Fetching]] = {}

    def refresh_token(self, customer_id: str) -> str | None:
        """The customer's refresh token, if it has one here."""
        with self._lock:
            return self.refresh_tokens.get(customer_id)

    def adopt(self, customer_id: str, refresh: str, made_at: float) -> bool:
        """Take ``refresh``, from a context made at ``made_at`` (wall clock), unless it is the
        customer's already, was spent here, or the app gave a newer one since; ``True`` when
        taken."""
        with self._lock:
            if self.refresh_tokens.get(customer_id) == refresh or digest(refresh) in self._spent:
                return False
            if self._seeded_at.get(customer_id, -1.0) >= made_at:
                return False
            self.refresh_tokens[customer_id] = refresh
            return True

    def set_refresh_token(self, customer_id: str, refresh: str) -> None:
        """The refresh token the app gave for the customer, newer than any held."""
        with self._lock:
            self._seed(customer_id, refresh)

    def set_token(self, customer_id: str, response: TokenResponse, *, expired: bool) -> None:
        """A whole token the app gave: its refresh token, if any, replaces the customer's, and
        its access token is used next unless ``expired`` (then one given before is dropped)."""
        with self._lock:
            if response.refresh_token is not None:
                self._seed(customer_id, response.refresh_token)
            if expired:
                self._given.pop(customer_id, None)
            else:
                self._given[customer_id] = (response, time.monotonic() + response.expires_in)

    def take_given(self, customer_id: str) -> tuple[TokenResponse, float] | None:
        """The whole token the app gave, and when it expires (monotonic clock), once."""
        with self._lock:
            return self._given.pop(customer_id, None)

    def given(self, customer_id: str) -> TokenResponse | None:
        """The whole token the app gave, not yet used."""
        with self._lock:
            given = self._given.get(customer_id)
        return None if given is None else given[0]

    def current(
        self, customer_id: str, refresh_token_for: Callable[[str], str | None] | None
    ) -> str:
        """The refresh token to send for the customer: held here, else from
        ``refresh_token_for``; ``SessionGoneError`` when there is none, or it was spent."""
        token = self.refresh_token(customer_id)
        seeded = token is None
        if seeded and refresh_token_for is not None:
            try:
                token = refresh_token_for(customer_id)
            except Exception as exc:
                raise ProviderError(
                    f"plugin 'oauth2': refresh_token_for raised {type(exc).__name__} for "
                    f"customer {customer_id!r}; see the chained exception",
                    plugin="oauth2",
                    customer_id=customer_id,
                ) from exc
            if token is not None and (not isinstance(token, str) or not token):
                raise ProviderError(
                    f"plugin 'oauth2': refresh_token_for returned {type_with_article(token)}, "
                    "not a non-empty str or None",
                    plugin="oauth2",
                    customer_id=customer_id,
                )
        if token is None:
            raise SessionGoneError(
                f"plugin 'oauth2': there is no refresh token for customer {customer_id!r}; "
                "log the customer in and give one with set_refresh_token() or refresh_token_for",
                customer_id=customer_id,
                error="no_refresh_token",
            )
        with self._lock:
            if digest(token) in self._spent:
                raise SessionGoneError(
                    f"plugin 'oauth2': the refresh token for customer {customer_id!r} was "
                    "already used and replaced (rotated) or refused, and is never sent twice; "
                    "log the customer in again",
                    customer_id=customer_id,
                    error="refresh_token_spent",
                )
            if seeded:
                self.refresh_tokens.setdefault(customer_id, token)
        return token

    @staticmethod
    def subject_token(customer_id: str, subject_token_for: Callable[[str], str | None]) -> str:
        """The customer's site session token for a token exchange, from ``subject_token_for``;
        ``SessionGoneError`` when it gives none."""
        try:
            token = subject_token_for(customer_id)
        except Exception as exc:
            raise ProviderError(
                f"plugin 'oauth2': subject_token_for raised {type(exc).__name__} for customer "
                f"{customer_id!r}; see the chained exception",
                plugin="oauth2",
                customer_id=customer_id,
            ) from exc
        if token is None:
            raise SessionGoneError(
                f"plugin 'oauth2': subject_token_for gave no site session token for customer "
                f"{customer_id!r}: the customer must log in again",
                customer_id=customer_id,
                error="no_subject_token",
            )
        if not isinstance(token, str) or not token:
            raise ProviderError(
                f"plugin 'oauth2': subject_token_for returned {type_with_article(token)}, "
                "not a non-empty str",
                plugin="oauth2",
                customer_id=customer_id,
            )
        return token

    def spend(self, customer_id: str, old: str) -> None:
        """Retire ``old``, refused by the token endpoint."""
        with self._lock:
            self._retire(customer_id, old, None)

    def begin(self, customer_id: str) -> Fetching:
        """A token call for the customer starts."""
        fetching = Fetching()
        with self._lock:
            self._fetching.setdefault(customer_id, []).append(fetching)
        return fetching

    def end(self, customer_id: str, fetching: Fetching) -> None:
        """The call ``begin`` returned is over, answered or not."""
        with self._lock:
            calls = self._fetching[customer_id]
            calls.remove(fetching)
            if not calls:
                del self._fetching[customer_id]

    def answered(
        self,
        customer_id: str,
        fetching: Fetching,
        response: TokenResponse,
        sent: str | None,
        rotated: str | None,
    ) -> bool:
        """Keep what a call got: ``sent``, the refresh token it sent, is spent when the server
        ``rotated`` it. ``False`` when the customer was cleared first: then nothing is kept."""
        with self._lock:
            # One step with take(): the customer is cleared wholly before or after this.
            cleared = fetching.cleared
            if rotated is not None and sent is not None:
                self._retire(customer_id, sent, None if cleared else rotated)
            fetching.response = response
        return not cleared

    def take(
        self, customer_id: str, *, revoke_late: bool
    ) -> tuple[str | None, list[TokenResponse]]:
        """Drop and return what is held for the customer: its refresh token, and the tokens
        given or answered to its calls under way (not cached yet). The later answers of those
        calls are the cleared session's: revoked when ``revoke_late``."""
        with self._lock:
            refresh = self.refresh_tokens.pop(customer_id, None)
            self._seeded_at.pop(customer_id, None)
            given = self._given.pop(customer_id, None)
            responses = []
            for fetching in self._fetching.get(customer_id, ()):
                fetching.cleared, fetching.revoke = True, revoke_late
                if fetching.response is not None:
                    responses.append(fetching.response)
        if given is not None:
            responses.append(given[0])
        return refresh, responses

    def _seed(self, customer_id: str, refresh: str) -> None:
        """Holds the lock."""
        self.refresh_tokens[customer_id] = refresh
        self._seeded_at[customer_id] = time.time()
        self._spent.pop(digest(refresh), None)

    def _retire(self, customer_id: str, old: str, new: str | None) -> None:
        """Retire ``old``; store ``new`` unless the app set another token meanwhile. Holds
        the lock."""
        self._spent[digest(old)] = True
        if self.refresh_tokens.get(customer_id) == old:
            if new is None:
                del self.refresh_tokens[customer_id]
            else:
                self.refresh_tokens[customer_id] = new
        elif new is not None and customer_id not in self.refresh_tokens:
            self.refresh_tokens[customer_id] = new
