"""The plugin's ``on_login_required``: log the customer in, keep the tokens, set the customer.

``login = "loopback"`` sends the customer's browser to the authorization endpoint (authorization
code with PKCE, redirect to a one-shot server on 127.0.0.1); ``login = "device"`` shows a code to
enter elsewhere and polls (RFC 8628). With ``openid`` in scope the ID token is validated and its
``sub`` (or ``customer_claim``) is the customer id; otherwise ``customer_id_for(token)`` says who
logged in. The login's whole token is kept (``set_token``), so the first request spends nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from asapp_auth.errors import ProviderError, type_with_article
from asapp_auth.logids import logged
from asapp_auth.otel import token_request

from ._device import DEVICE_GRANT, DeviceCode, parse_device_code, poll, print_device_code
from ._id_token import JWKS, validate_id_token
from ._login_settings import LoginSettings
from ._pkce_loopback import authorize
from ._response import parse_token_response
from ._transport import HTTPResult, describe_endpoint
from .errors import IDTokenError, LoginError, OAuth2Error

if TYPE_CHECKING:
    from asapp_auth.customer import Customer
    from asapp_auth.pipeline import AuthPipeline

    from ._provider import OAuth2Provider

__all__ = ["Login"]

log = logging.getLogger("asapp_auth_oauth2")


class Login:
    """How the plugin logs customers in. ``open_browser(url)`` (loopback) and
    ``show_device_code(code)`` (device) are the app's to replace, as settings or attributes:
    a test or a headless run drives the login page itself from them."""

    def __init__(
        self,
        provider: OAuth2Provider,
        settings: LoginSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self.settings = settings
        self.open_browser: Callable[[str], object] = settings.open_browser or webbrowser.open
        self.show_device_code: Callable[[DeviceCode], object] = (
            settings.show_device_code or print_device_code
        )
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._jwks: JWKS | None = None

    def run(self, pipeline: AuthPipeline, customer: Customer | None, reason: str) -> bool:
        """Log a customer in and set it on ``pipeline``; raise a ``LoginError`` when that fails.

        Bounded by ``login_timeout`` and the pipeline's own.
        """
        deadline = self._clock() + min(self.settings.timeout, pipeline.login_timeout)
        method = self.settings.method
        log.info("plugin 'oauth2': logging a customer in (%s login, %s)", method, reason)
        try:
            token_endpoint = self._provider.token_endpoint()
            if method == "loopback":
                result, nonce = self._loopback(token_endpoint, deadline)
            else:
                result, nonce = self._device(token_endpoint, deadline), None
            shown = describe_endpoint(token_endpoint)
            response = parse_token_response(result.data, self._provider.settings, endpoint=shown)
            customer_id = self._identify(result.data, response.access_token, nonce, shown)
        except LoginError:
            raise
        except ProviderError as exc:
            endpoint = getattr(exc, "endpoint", None) or getattr(exc, "issuer", None) or ""
            raise LoginError(
                f"plugin 'oauth2': the {method} login failed: {exc}",
                endpoint=endpoint,
                error=exc.error if isinstance(exc, OAuth2Error) else "login_failed",
            ) from exc
        token = {k: v for k, v in result.data.items() if k != "id_token"}
        self._provider.set_token(customer_id, token)
        if self._provider.settings.on_token is not None:
            self._provider._announce(customer_id, response)  # the app may keep it (a restart)
        pipeline.set_customer(customer_id)
        log.info("plugin 'oauth2': customer %s logged in (%s login)", logged(customer_id), method)
        return True

    # -- the two ways in ------------------------------------------------------------------------

    def _endpoint(self, name: str, setting: str | None) -> str:
        if setting is not None:
            return setting
        discovery = self._provider._discovery
        assert discovery is not None  # the settings require issuer without the endpoint
        endpoint = discovery.endpoint(name, required=True)
        assert endpoint is not None
        return endpoint

    def _loopback(self, token_endpoint: str, deadline: float) -> tuple[HTTPResult, str | None]:
        s, settings = self._provider.settings, self.settings
        discovery = self._provider._discovery
        code = authorize(
            authorization_endpoint=self._endpoint(
                "authorization_endpoint", settings.authorization_endpoint
            ),
            client_id=s.client_id,
            scope=s.scope,
            resource=s.resource,
            openid=settings.openid,
            issuer=None if discovery is None else str(discovery.metadata().get("issuer")),
            require_iss=discovery is not None
            and discovery.metadata().get("authorization_response_iss_parameter_supported") is True,
            port=settings.redirect_port,
            path=settings.redirect_path,
            open_browser=self.open_browser,
            deadline=deadline,
            clock=self._clock,
        )
        form: dict[str, Any] = {
            "grant_type": "authorization_code",
            "code": code.code,
            "redirect_uri": code.redirect_uri,
            "code_verifier": code.code_verifier,
        }
        if s.resource:
            form["resource"] = list(s.resource)
        # An authorization code is good once: a request that may have reached the server is
        # not sent again.
        return self._token_request(
            token_endpoint, form, [code.code, code.code_verifier]
        ), code.nonce

    def _device(self, token_endpoint: str, deadline: float) -> HTTPResult:
        s = self._provider.settings
        endpoint = self._endpoint(
            "device_authorization_endpoint", self.settings.device_authorization_endpoint
        )
        form: dict[str, Any] = {}
        if s.scope:
            form["scope"] = s.scope
        headers: dict[str, str] = {}
        scrub = self._provider._client_auth.authenticate(form, headers, token_endpoint)
        answer = self._provider._transport.request(
            "POST",
            endpoint,
            form=form,
            headers=headers,
            secrets=scrub,
            what="device authorization endpoint",
        )
        code = parse_device_code(answer.data, describe_endpoint(endpoint))
        try:
            self.show_device_code(code)
        except Exception as exc:
            raise LoginError(
                f"plugin 'oauth2': show_device_code raised {type(exc).__name__}; see the chained "
                "exception",
                endpoint=describe_endpoint(endpoint),
                error="show_device_code_failed",
            ) from exc

        def request() -> HTTPResult:
            grant = {"grant_type": DEVICE_GRANT, "device_code": code.device_code}
            return self._token_request(token_endpoint, grant, [code.device_code])

        return poll(
            request,
            code,
            token_endpoint=token_endpoint,
            deadline=deadline,
            sleep=self._sleep,
            clock=self._clock,
        )

    def _token_request(self, endpoint: str, form: dict[str, Any], scrub: list[str]) -> HTTPResult:
        headers: dict[str, str] = {}
        scrub = [*scrub, *self._provider._client_auth.authenticate(form, headers, endpoint)]
        with token_request("oauth2", form["grant_type"]):
            return self._provider._transport.request(
                "POST", endpoint, form=form, headers=headers, idempotent=False, secrets=scrub
            )

    # -- who logged in --------------------------------------------------------------------------

    def _identify(
        self, data: Mapping[str, Any], access_token: str, nonce: str | None, endpoint: str
    ) -> str:
        settings = self.settings
        if not settings.openid:
            assert settings.customer_id_for is not None
            return self._customer_id_for(data, endpoint)
        discovery = self._provider._discovery
        assert discovery is not None  # openid requires issuer
        claims = validate_id_token(
            data.get("id_token"),
            jwks=self._keys(),
            issuer=str(discovery.metadata().get("issuer")),
            client_id=self._provider.settings.client_id,
            nonce=nonce,
            algorithms=settings.id_token_algorithms,
            leeway=settings.id_token_leeway,
            max_age=settings.id_token_max_age,
            access_token=access_token,
            endpoint=endpoint,
        )
        customer_id = claims.get(settings.customer_claim)
        if not isinstance(customer_id, str) or not customer_id or len(customer_id) > 1024:
            raise IDTokenError(
                f"plugin 'oauth2': the ID token from the token endpoint {endpoint} has no usable "
                f"{settings.customer_claim!r} claim (customer_claim): it must be a non-empty "
                "string",
                endpoint=endpoint,
                check=settings.customer_claim,
            )
        return customer_id

    def _customer_id_for(self, data: Mapping[str, Any], endpoint: str) -> str:
        getter = self.settings.customer_id_for
        assert getter is not None
        try:
            customer_id = getter(dict(data))
        except Exception as exc:
            raise LoginError(
                f"plugin 'oauth2': customer_id_for raised {type(exc).__name__}; see the chained "
                "exception",
                endpoint=endpoint,
                error="customer_id_for_failed",
            ) from exc
        if not isinstance(customer_id, str) or not customer_id:
            raise LoginError(
                "plugin 'oauth2': customer_id_for returned "
                f"{type_with_article(customer_id)}, not a non-empty str customer id",
                endpoint=endpoint,
                error="customer_id_for_failed",
            )
        return customer_id

    def _keys(self) -> JWKS:
        with self._lock:
            if self._jwks is None:
                uri = self._endpoint("jwks_uri", self.settings.jwks_uri)
                transport = self._provider._transport

                def fetch() -> Mapping[str, Any]:
                    return transport.request("GET", uri, what="JWKS endpoint").data

                self._jwks = JWKS(fetch, clock=self._clock)
            return self._jwks
