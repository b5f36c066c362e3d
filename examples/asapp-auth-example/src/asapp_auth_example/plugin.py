"""``SessionServiceProvider``: each customer's platform token from the company's session service.

The session service is the company's own HTTP API. ``POST session_url`` with the JSON body
``{"customer": ID, "fresh": BOOL}`` and the app's API key as a bearer token answers
``{"token": "...", "expires_in": SECONDS}`` (``expires_in`` optional); ``404`` means the service
holds no session for the customer, who must log in again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from time import monotonic
from typing import Any

import httpx

from asapp_auth import AuthContext, Customer, hookimpl
from asapp_auth.errors import (
    ConfigurationError,
    LoginRequiredError,
    ProviderError,
    ProviderTimeoutError,
)
from asapp_auth.plugins import SettingsProblems
from asapp_auth.secrets import Secret, resolve_secret

ENTRY_POINT = "example"
PLUGIN = f"plugin {ENTRY_POINT!r}"
"""What starts every error message of this plugin, as of every plugin: ``plugin 'example'``."""
SETTINGS = frozenset({"session_url", "api_key", "lifetime", "customers", "timeout"})
"""Every setting ``from_settings`` accepts."""


def _fail(setting: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{PLUGIN}: setting {setting!r} {problem}")


def _seconds(setting: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(setting, "must be a number of seconds")
    if value <= 0:
        raise _fail(setting, "must be above 0")
    return float(value)


def _url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise _fail("session_url", "must be an http(s) URL")
    return value


def _customers(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _fail("customers", "must be a list of ids")
    ids = frozenset(value)
    if not all(isinstance(c, str) and c for c in ids):
        raise _fail("customers", "must be a list of ids")
    return ids


class SessionServiceProvider:
    """Answers ``provide_context`` with ``{"Auth": {"Token": ...}}`` from the session service.

    Every value is checked here, so that a bad setting fails when the pipeline is configured,
    not at the first request. The pipeline caches what this returns, so it keeps no token itself;
    with ``needs_refresh`` it asks the service for a fresh token (``"fresh": true``). Customers
    outside ``customers`` (when given) are not its own: it returns ``None`` for them.
    """

    def __init__(
        self,
        *,
        session_url: str,
        api_key: str | Secret,
        lifetime: float = 300.0,
        customers: Iterable[str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        # Every setting is checked, and all their problems are raised together.
        problems = SettingsProblems(ENTRY_POINT)
        self.session_url = problems.check("session_url", _url, session_url) or ""
        # Resolved now: a missing variable or file fails at configuration time, naming it.
        key = problems.check(
            "api_key", resolve_secret, api_key, setting="api_key", plugin=ENTRY_POINT
        )
        self.lifetime = problems.check("lifetime", _seconds, "lifetime", lifetime) or 0.0
        self.customers = problems.check("customers", _customers, customers)
        self.timeout = problems.check("timeout", _seconds, "timeout", timeout) or 0.0
        problems.raise_any()
        self._api_key = Secret(key or "")
        # The plugin's own client, without the pipeline as its auth: never send a context here.
        self._client = httpx.Client(timeout=self.timeout)

    @hookimpl
    def provide_context(
        self, customer: Customer, needs_refresh: bool, deadline: float | None = None
    ) -> AuthContext | None:
        """The customer's token from the session service, or ``None`` for a customer not served.

        The call ends by ``deadline`` (the pipeline's), raising ``ProviderTimeoutError`` if the
        service has not answered by then.
        """
        if self.customers is not None and customer.id not in self.customers:
            return None  # not mine: the next provider is asked
        # One attempt, cut at the pipeline's deadline when that comes before our own timeout.
        timeout = self.timeout if deadline is None else min(self.timeout, deadline - monotonic())
        if timeout <= 0:
            raise self._late(customer)
        try:
            response = self._client.post(
                self.session_url,
                json={"customer": customer.id, "fresh": needs_refresh},
                headers={"Authorization": f"Bearer {self._api_key.reveal()}"},
                timeout=timeout,
            )
        except httpx.TimeoutException:
            if timeout < self.timeout:
                raise self._late(customer) from None
            raise self._failed(customer, "did not answer within its 'timeout'") from None
        except httpx.HTTPError as exc:
            raise self._failed(customer, f"could not be reached ({type(exc).__name__})") from None
        if response.status_code == 404:
            raise LoginRequiredError(
                f"{PLUGIN}: the session service holds no session for customer {customer.id!r}; "
                "they must log in again",
                customer_id=customer.id,
            )
        if response.status_code != 200:
            raise self._failed(customer, f"answered HTTP {response.status_code}")
        try:
            answer = response.json()
            token, expires_in = answer["token"], answer.get("expires_in", self.lifetime)
        except (ValueError, KeyError, TypeError, AttributeError):
            problem = "answered no token (not a JSON object with 'token')"
            raise self._failed(customer, problem) from None
        if not isinstance(token, str) or not token:
            what = "no" if token is None else f"a {type(token).__name__}"
            raise self._failed(customer, f"answered {what} token, not a str")
        try:
            return AuthContext({"Auth": {"Token": token}}, expires_in=expires_in, source=PLUGIN)
        except ValueError as exc:  # InvalidContextError: a token unfit for a header, say
            raise self._failed(customer, f"answered an unusable context ({exc})") from None

    def _late(self, customer: Customer) -> ProviderTimeoutError:
        return ProviderTimeoutError(
            f"{PLUGIN}: the session service at {self.session_url} did not answer within the "
            "pipeline's provider_timeout",
            plugin=ENTRY_POINT,
            customer_id=customer.id,
        )

    def _failed(self, customer: Customer, problem: str) -> ProviderError:
        return ProviderError(
            f"{PLUGIN}: the session service at {self.session_url} {problem}",
            plugin=ENTRY_POINT,
            customer_id=customer.id,
        )

    @hookimpl
    def on_pipeline_closed(self) -> None:
        """The pipeline is closing (``close()``, leaving ``with``): close our own HTTP client."""
        self.close()

    def close(self) -> None:
        """Close the plugin's own HTTP client."""
        self._client.close()

    def __repr__(self) -> str:  # never the API key
        return f"SessionServiceProvider(session_url={self.session_url!r})"


def from_settings(settings: Mapping[str, Any]) -> SessionServiceProvider:
    """The plugin object for a pipeline's ``example`` settings; the entry point's factory.

    Every problem is reported at once, in the order the settings were given.
    """
    problems = SettingsProblems(ENTRY_POINT, settings, known=SETTINGS)
    missing = [name for name in ("session_url", "api_key") if name not in settings]
    for name in missing:
        problems.add(name, f"setting {name!r} is missing; it is required")
    provider = None
    if not missing:
        given = {name: value for name, value in settings.items() if name in SETTINGS}
        provider = problems.check(None, SessionServiceProvider, **given)
    problems.raise_any()
    assert provider is not None
    return provider
