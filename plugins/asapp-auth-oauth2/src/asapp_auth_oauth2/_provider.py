"""``OAuth2Provider``: the plugin object that answers ``provide_context`` with an access token."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from asapp_auth import AuthContext, Customer, hookimpl
from asapp_auth.errors import ProviderError, ProviderTimeoutError
from asapp_auth.logids import logged
from asapp_auth.otel import token_request

from ._cache import SlotBusy, TokenCache
from ._client_auth import ClientAuth
from ._customer_tokens import CustomerTokens, Fetching, digest, hand_to_app
from ._discovery import Discovery
from ._dpop import DPoP, DPoPHooks
from ._login import Login
from ._response import TokenResponse, given_token, parse_token_response, token_dict
from ._revocation import Revocations
from ._settings import OAuth2Settings, parse_settings
from ._transport import Transport, describe_endpoint
from .errors import InvalidGrantError, SessionGoneError

if TYPE_CHECKING:
    from asapp_auth.pipeline import AuthPipeline

__all__ = ["OAuth2Provider", "from_settings"]

log = logging.getLogger("asapp_auth_oauth2")

SOURCE = "plugin 'oauth2'"


class OAuth2Provider:
    """Gets access tokens from an OAuth 2.0 token endpoint and answers ``provide_context`` with
    ``{"Auth": {"Token": access_token}}`` and the server's ``expires_in``.

    Takes the settings as keyword arguments (see the README for every name); they are all
    validated here and a bad one raises ``ConfigurationError`` naming it. Thread-safe.
    """

    def __init__(
        self,
        *,
        _sleep: Callable[[float], None] = time.sleep,
        _client_factory: Callable[[], httpx.Client] | None = None,
        _clock: Callable[[], float] = time.monotonic,
        **settings: Any,
    ) -> None:
        self.settings: OAuth2Settings = parse_settings(settings)
        s = self.settings
        self._transport = Transport(s, sleep=_sleep, client_factory=_client_factory)
        self._discovery = (
            None
            if s.issuer is None
            else Discovery(s.issuer, self._transport, allow_http=s.allow_http)
        )
        self._cache = TokenCache(max_entries=s.max_cached_tokens, expiry_margin=s.expiry_margin)
        # The plugin's own login (the ``login`` setting); None leaves logins to the app.
        self.login: Login | None = (
            None if s.login is None else Login(self, s.login, sleep=_sleep, clock=_clock)
        )
        self._client_auth = ClientAuth(s)
        self._tokens = CustomerTokens()
        # DPoP: the key, the servers' nonces, and the request-path hooks, set on this object
        # only when on, so that pipelines without DPoP have no request_proof to call.
        self._dpop = None if s.dpop is None else DPoP(s.dpop)
        if self._dpop is not None:
            hooks = DPoPHooks(self._dpop)
            self.request_proof = hooks.request_proof
            self.classify_response = hooks.classify_response
        self._revocations = Revocations(self)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> OAuth2Provider:
        return cls(**dict(settings))

    # -- the hook -------------------------------------------------------------------------------

    @hookimpl
    def provide_context(
        self,
        customer: Customer,
        needs_refresh: bool,
        previous: AuthContext | None,
        deadline: float | None = None,
    ) -> AuthContext:
        """An access token for ``customer``: the shared client-credentials token, or the
        customer's own (refresh token, token exchange, JWT bearer).

        With the refresh-token grant, the customer's current refresh token travels in the
        context's ``state``, and one found in ``previous`` (the newest context, across a fleet
        sharing a cache) is used rather than an older one this process remembers. Every
        request, retry and wait fits before ``deadline``, or ``TokenEndpointTimeoutError`` (a
        ``ProviderTimeoutError``) is raised.
        """
        rotating = self.settings.grant == "refresh_token"
        if rotating and previous is not None:
            self._adopt_refresh_token(customer.id, previous)
        token, remaining = self.get_token(
            customer.id, needs_refresh=needs_refresh, deadline=deadline
        )
        state = None
        if rotating:
            refresh = self._tokens.refresh_token(customer.id)
            state = None if refresh is None else {"refresh_token": refresh}
        # A DPoP-bound token goes in its own scheme, with a proof per request (request_proof).
        auth = (
            {"Token": token}
            if self._dpop is None
            else {"Headers": {"Authorization": f"DPoP {token}"}}
        )
        return AuthContext({"Auth": auth}, expires_in=remaining, source=SOURCE, state=state)

    def _adopt_refresh_token(self, customer_id: str, previous: AuthContext) -> None:
        """Take the refresh token kept in ``previous`` unless it was spent here, or the app gave
        this process a newer one since ``previous`` was made."""
        refresh = previous.state.get("refresh_token")
        if not refresh:
            return
        made = previous.expires_at
        made_at = 0.0 if made is None else made.timestamp() - (previous.expires_in or 0.0)
        if not self._tokens.adopt(customer_id, refresh, made_at):
            return
        # A new refresh token means the access tokens cached here are no longer this customer's
        # newest: the next one comes from the token endpoint.
        self._cache.forget_customer(customer_id)

    # -- public API -----------------------------------------------------------------------------

    @property
    def token_endpoint_calls(self) -> int:
        """How many tokens this plugin has fetched (successful token-endpoint calls)."""
        return self._cache.fetches

    def token_endpoint(self, deadline: float | None = None) -> str:
        """The token endpoint: the setting, or the issuer's metadata (fetched once, before
        ``deadline``)."""
        if self.settings.token_endpoint is not None:
            return self.settings.token_endpoint
        assert self._discovery is not None
        endpoint = self._discovery.endpoint("token_endpoint", required=True, deadline=deadline)
        assert endpoint is not None
        return endpoint

    def revocation_endpoint(self, deadline: float | None = None) -> str | None:
        """The RFC 7009 revocation endpoint, when set or discovered; else ``None``."""
        if self.settings.revocation_endpoint is not None:
            return self.settings.revocation_endpoint
        if self._discovery is None:
            return None
        return self._discovery.endpoint("revocation_endpoint", required=False, deadline=deadline)

    def get_token(
        self, customer_id: str, *, needs_refresh: bool = False, deadline: float | None = None
    ) -> tuple[str, float]:
        """The access token for ``customer_id`` and its remaining lifetime in seconds, got
        before ``deadline`` (``time.monotonic()``) when one is given."""
        s = self.settings
        endpoint = self.token_endpoint(deadline)
        owner = customer_id if s.per_customer else None
        subject: str | None = None
        extra: str | None = None
        if s.grant == "token_exchange":
            getter = s.subject_token_for
            assert getter is not None
            subject = self._tokens.subject_token(customer_id, getter)
            extra = digest(subject)  # a new site session gets a new platform token
        key = (endpoint, s.client_id, s.grant, s.scope, s.audience, s.resource, owner, extra)
        fetching: Fetching | None = None
        if owner is not None:
            given = self._tokens.take_given(owner)
            if given is not None:
                self._cache.put(key, given[0], given[1], owner=owner)
            fetching = self._tokens.begin(owner)

        def fetch() -> TokenResponse:
            return self._fetch(endpoint, customer_id, subject, deadline, fetching)

        try:
            response, remaining = self._cache.get(
                key, customer_id, needs_refresh, fetch, owner=owner, deadline=deadline
            )
        except SlotBusy:
            raise ProviderTimeoutError(
                f"plugin 'oauth2': the {s.grant} token for customer {customer_id!r} was still "
                "being fetched for another request when the time the pipeline gives the plugin "
                "(provider_timeout) ran out; the next request asks again",
                plugin="oauth2",
                customer_id=customer_id,
            ) from None
        finally:
            if owner is not None and fetching is not None:
                self._tokens.end(owner, fetching)
        return response.access_token, remaining

    def set_refresh_token(self, customer_id: str, refresh_token: str) -> None:
        """Seed (or replace) ``customer_id``'s refresh token, for instance after the app's login.

        The customer's cached access tokens are dropped, so the next request uses the new grant.
        """
        if not isinstance(customer_id, str) or not customer_id:
            raise ProviderError("set_refresh_token needs a non-empty customer_id", plugin="oauth2")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ProviderError(
                "set_refresh_token needs a non-empty str refresh token", plugin="oauth2"
            )
        self._tokens.set_refresh_token(customer_id, refresh_token)
        self._cache.forget_customer(customer_id)

    def set_token(self, customer_id: str, token: Mapping[str, Any]) -> None:
        """Seed ``customer_id``'s whole token, as the app's login got it and as
        ``OAuth2Session(token=...)`` takes it: ``access_token``, ``token_type``, ``expires_in``
        or ``expires_at`` (seconds since the epoch), ``refresh_token``, ``scope``.

        The customer's next request uses that access token without calling the token endpoint,
        and its refresh token, when it has one, replaces the customer's. An access token that
        has already expired is dropped and its refresh token kept, to get the next one.
        """
        s = self.settings
        if not s.per_customer:
            raise ProviderError(
                f"plugin 'oauth2': set_token is for per-customer grants; with grant={s.grant!r} "
                "the token is the client's, fetched when needed",
                plugin="oauth2",
            )
        if not isinstance(customer_id, str) or not customer_id:
            raise ProviderError("set_token needs a non-empty customer_id", plugin="oauth2")
        response, expired = given_token(customer_id, token, s)
        self._tokens.set_token(customer_id, response, expired=expired)
        self._cache.forget_customer(customer_id)

    def granted_scope(self, customer_id: str | None = None) -> frozenset[str] | None:
        """The scopes granted with the newest token held for ``customer_id`` (per-customer
        grants) or for the client (``client_credentials``, no id needed).

        They are the server's ``scope``, or the requested ones when it named none (RFC 6749
        section 5.1); empty when neither did. ``None`` when no token is held.
        """
        owner = customer_id if self.settings.per_customer else None
        response: TokenResponse | None = None
        if owner is not None:
            response = self._tokens.given(owner)
        if response is None:
            response = self._cache.newest(owner)
        if response is None:
            return None
        scope = response.scope if response.scope is not None else self.settings.scope
        return frozenset((scope or "").split())

    def forget(self, customer_id: str) -> None:
        """Drop everything held for ``customer_id`` (tokens and refresh token), revoking nothing;
        tokens a call under way gets for it later are dropped too."""
        self._take_customer(customer_id, revoke_late=False)

    def revoke(self, customer_id: str) -> int:
        """Revoke ``customer_id``'s refresh token and access tokens (RFC 7009), then forget them,
        waiting for the answers (``revocation_timeout`` at most).

        Returns how many tokens the server accepted to revoke. Failures are logged, not raised:
        the tokens are forgotten here either way. The shared client-credentials token is not a
        customer's and is never revoked here. Tokens a call under way gets for the customer
        later are revoked by the plugin's worker, and never kept.
        """
        tokens = self._take_customer(customer_id, revoke_late=True)
        return self._revocations.now(customer_id, tokens) if tokens else 0

    @property
    def pending_revocations(self) -> int:
        """Revocations of cleared customers' tokens queued or under way."""
        return self._revocations.pending

    @hookimpl
    def on_login_required(
        self, pipeline: AuthPipeline, customer: Customer | None, reason: str
    ) -> bool | None:
        """With the ``login`` setting: log the customer in (browser with a loopback redirect, or
        device code), keep its tokens and set it on the pipeline; a failed login raises a
        ``LoginError``. Without it ``None``: the app's own handler logs customers in."""
        if self.login is None:
            return None
        return self.login.run(pipeline, customer, reason)

    @hookimpl(optionalhook=True)
    def on_customer_cleared(self, customer: Customer) -> None:
        """When the pipeline clears a customer: forget its tokens at once and, with
        ``revoke_on_clear``, queue their revocation for the plugin's worker thread (with those
        a token-endpoint call under way gets for the customer afterwards)."""
        revoke = self._revokes_on_clear()
        tokens = self._take_customer(customer.id, revoke_late=revoke)
        if revoke and tokens:
            self._revocations.later(customer.id, tokens)

    def _revokes_on_clear(self) -> bool:
        s = self.settings
        return s.revoke_on_clear and bool(s.revocation_endpoint or s.issuer)

    @hookimpl
    def on_pipeline_closed(self, deadline: float) -> None:
        """When the pipeline closes: ``close(deadline)``."""
        self.close(deadline)

    def close(self, deadline: float | None = None) -> None:
        """Wait for the queued revocations until ``deadline`` (``time.monotonic()``; by default
        ``revocation_timeout`` from now), then close the plugin's own HTTP client. The plugin
        refuses work afterwards."""
        if deadline is None:
            deadline = time.monotonic() + self.settings.revocation_timeout
        left = self._revocations.drain(deadline)
        if left:
            log.warning(
                "plugin 'oauth2': %d revocation(s) still pending when closed; their tokens are "
                "forgotten without being revoked",
                left,
            )
        self._transport.close()

    def __repr__(self) -> str:
        s = self.settings
        where = s.token_endpoint or f"issuer {s.issuer}"
        return (
            f"OAuth2Provider(grant={s.grant!r}, client_id={s.client_id!r}, "
            f"client_auth={s.client_auth!r}, endpoint={where!r})"
        )

    # -- internals ------------------------------------------------------------------------------

    def _take_customer(self, customer_id: str, *, revoke_late: bool) -> list[tuple[str, str]]:
        """Drop and return every token held for ``customer_id``, with the answers of its calls
        under way; the later answers of those calls are revoked when ``revoke_late``."""
        refresh, responses = self._tokens.take(customer_id, revoke_late=revoke_late)
        responses += self._cache.forget_customer(customer_id)
        tokens: list[tuple[str, str]] = []
        if refresh is not None:
            tokens.append((refresh, "refresh_token"))
        for token in dict.fromkeys(r.access_token for r in responses):
            tokens.append((token, "access_token"))
        return tokens

    def _fetch(
        self,
        endpoint: str,
        customer_id: str,
        subject: str | None,
        deadline: float | None,
        fetching: Fetching | None,
    ) -> TokenResponse:
        s = self.settings
        form: dict[str, Any] = {"grant_type": s.grant_type}
        scrub: list[str] = []
        refresh: str | None = None
        if s.grant == "refresh_token":
            refresh = self._tokens.current(customer_id, s.refresh_token_for)
            form["refresh_token"] = refresh
            scrub.append(refresh)
        elif s.grant == "token_exchange":
            assert subject is not None
            form["subject_token"] = subject
            form["subject_token_type"] = s.subject_token_type
            if s.requested_token_type:
                form["requested_token_type"] = s.requested_token_type
            scrub.append(subject)
        elif s.grant == "jwt_bearer":
            audience = s.assertion_audience or endpoint
            claims = self._client_auth.assertion_claims(customer_id, audience)
            assertion = self._client_auth.sign(claims, "JWT bearer")
            form["assertion"] = assertion
            scrub.append(assertion)
        if s.scope:
            form["scope"] = s.scope
        if s.audience:
            form["audience"] = list(s.audience)
        if s.resource:
            form["resource"] = list(s.resource)
        headers: dict[str, str] = {}
        scrub += self._client_auth.authenticate(form, headers, endpoint)
        log.debug("plugin 'oauth2': requesting a %s token from %s", s.grant, endpoint)

        def send(**dpop: Any) -> Any:
            return self._transport.request(
                "POST",
                endpoint,
                form=form,
                headers=headers,
                idempotent=refresh is None,
                secrets=scrub,
                customer_id=customer_id if s.per_customer else None,
                deadline=deadline,
                **dpop,
            )

        try:
            with token_request("oauth2", s.grant_type):
                result = send() if self._dpop is None else self._dpop.token_request(endpoint, send)
        except InvalidGrantError as exc:
            if s.grant not in ("refresh_token", "token_exchange"):
                raise
            if refresh is not None:
                self._tokens.spend(customer_id, refresh)
            what = "refresh token" if refresh is not None else "site session token"
            raise SessionGoneError(
                f"plugin 'oauth2': the token endpoint {exc.endpoint} refused the {what} of "
                f"customer {customer_id!r} (invalid_grant"
                + (f": {exc.error_description}" if exc.error_description else "")
                + "): the customer must log in again",
                customer_id=customer_id,
                error_description=exc.error_description,
                endpoint=exc.endpoint,
            ) from None
        response = parse_token_response(
            result.data,
            s,
            endpoint=describe_endpoint(endpoint),
            customer_id=customer_id if s.per_customer else None,
        )
        new = response.refresh_token
        rotated = new if refresh is not None and new and new != refresh else None
        if fetching is not None and not self._tokens.answered(
            customer_id, fetching, response, refresh, rotated
        ):
            self._cleared_meanwhile(customer_id, response, rotated, fetching.revoke)
            return response
        if rotated is not None and s.on_refresh_token is not None:
            hand_to_app(
                s.on_refresh_token, "on_refresh_token", customer_id, rotated, "refresh token"
            )
        if s.per_customer and s.on_token is not None:
            self._announce(customer_id, response)
        return response

    def _announce(self, customer_id: str, response: TokenResponse) -> None:
        """Give ``on_token`` the customer's whole new token, with the refresh token to keep."""
        assert self.settings.on_token is not None
        refresh = response.refresh_token or self._tokens.refresh_token(customer_id)
        whole = token_dict(response, expires_in=response.expires_in, refresh_token=refresh)
        hand_to_app(self.settings.on_token, "on_token", customer_id, whole, "token")

    def _cleared_meanwhile(
        self, customer_id: str, response: TokenResponse, rotated: str | None, revoke: bool
    ) -> None:
        """The tokens of an answer that came for a customer cleared since it was asked for."""
        tokens = [(response.access_token, "access_token")]
        if rotated is not None:
            tokens.insert(0, (rotated, "refresh_token"))
        log.info(
            "plugin 'oauth2': customer %s was cleared while its token was being fetched; the new "
            "tokens are %s",
            logged(customer_id),
            "revoked" if revoke else "dropped",
        )
        if revoke:
            self._revocations.later(customer_id, tokens)


def from_settings(settings: Mapping[str, Any]) -> OAuth2Provider:
    """The entry point's factory: the plugin object for a pipeline's ``oauth2`` settings."""
    return OAuth2Provider.from_settings(settings)
