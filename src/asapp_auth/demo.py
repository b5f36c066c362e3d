"""``asapp-auth demo``: the SDKs' authentication model, step by step, with real requests.

A fake chat platform starts on 127.0.0.1; an ``AuthPipeline`` wraps a client (``httpx.Client`` by
default; ``client`` picks any adapter's); each step makes requests and checks what the platform
received. ``provider`` chooses who serves the
customers' contexts: ``app``, the app's own ``context_provider`` (the default), or an installed
provider plugin (``static``, ``jwt``, ``oauth2``) set up against the same platform, whose tokens
the platform really checks. Secrets are never printed.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

from ._any_client import EXTRAS, Result, open_client
from ._demo_backend import LIFETIME as _LIFETIME
from ._demo_backend import Backend as _Backend
from ._demo_backend import Platform as _Platform
from ._demo_backend import b64decode as _b64decode
from ._demo_backend import check as _check
from ._demo_backend import write_secret as _write_secret
from ._demo_oauth2 import OAuth2Backend as _OAuth2
from ._demo_telemetry import print_table, recording
from ._hints import extra_hint
from .customer import Customer
from .errors import NoProviderError, TokenRejectedError
from .hookspecs import hookimpl
from .pipeline import AuthPipeline
from .plugins import PluginInfo, discover, unavailable
from .testing import FakePlatform, RecordingProvider

__all__ = ["PLUGIN_PROVIDERS", "PROVIDERS", "missing_plugin", "run"]

PLUGIN_PROVIDERS = ("static", "jwt", "oauth2")
PROVIDERS = ("app", *PLUGIN_PROVIDERS)
"""``app``: the app's own context provider; the others: the installed plugin of that name."""


def missing_plugin(provider: str) -> str | None:
    """Why ``provider`` cannot serve the demo (one line, saying what to do), or ``None``."""
    installed = [info.name for info in discover()]
    if provider == "app" or provider in installed:
        return None
    return f"demo --provider {provider}: {unavailable(provider, installed)}"


def missing_client(kind: str) -> str | None:
    """Why a ``kind`` of client cannot run the demo (one line, saying what to do), or ``None``."""
    module = kind.removesuffix("-async")
    try:
        __import__(module)
    except ImportError:
        return f"demo --client {kind} needs {module}: {extra_hint(EXTRAS[kind])}"
    return None


class _App(_Backend):
    """The app's own ``context_provider``: here a ``RecordingProvider``, one per customer."""

    def __init__(self, platform: _Platform, workdir: Path) -> None:
        super().__init__(platform, workdir)
        self.providers: dict[str, RecordingProvider] = {}

    def describe(self, info: PluginInfo | None) -> str:
        return "the app's own context_provider (a RecordingProvider)"

    def login(self, pipeline: AuthPipeline, customer_id: str) -> None:
        provider = self.providers.setdefault(
            customer_id, RecordingProvider(self.platform, customer_id)
        )
        pipeline.set_customer(customer_id, provider)

    def expire(self) -> str:
        self.providers["alice"].delay = 0.05  # the app's token service takes 50 ms
        self.platform.expire()
        return "an expired token"


class _Static(_Backend):
    """``asapp-auth-static``: a token file the platform issued for alice, watched by the plugin.

    A static token cannot renew itself: after an expiry only a new file (a rotation by whatever
    writes it) makes requests succeed again.
    """

    plugin = "static"
    serves = ("alice",)

    def __init__(self, platform: _Platform, workdir: Path) -> None:
        super().__init__(platform, workdir)
        self.token_file = workdir / "platform-token"
        self.rotate()

    def describe(self, info: PluginInfo | None) -> str:
        return f"{super().describe(info)}: a token file issued for alice, watched"

    def settings(self) -> dict[str, Any]:
        return {"token_file": str(self.token_file), "customers": list(self.serves or ())}

    def rotate(self) -> None:
        """Write a new token for alice into the file, as a secret rotator would."""
        token = self.platform.issue_token("alice", _LIFETIME)
        _write_secret(self.token_file, f"{token}\n".encode())


class _Jwt(_Backend):
    """``asapp-auth-jwt``: ES256 JWTs signed by a key made for this run; the platform verifies
    them with the JWKS the plugin publishes. Both read one clock, which ``expire`` moves past the
    tokens' ``exp``."""

    plugin = "jwt"
    issuer = "https://company.example"
    kid = "demo-es256"

    def __init__(self, platform: _Platform, workdir: Path) -> None:
        # cryptography comes with the jwt plugin: the core does not depend on it.
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec, utils  # noqa: PLC0415

        super().__init__(platform, workdir)
        self.key_file = workdir / "company-es256.pem"
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_secret(self.key_file, pem)
        self.skew = 0.0
        self.published: dict[str, ec.EllipticCurvePublicKey] = {}  # kid -> key, from the JWKS

        def verify(token: str) -> str | None:
            """The platform's check of a company JWT: an ES256 signature by a published key,
            issuer, audience and ``nbf <= now < exp``. Returns the ``sub``, or ``None``."""
            try:
                head, body, signature = token.split(".")
                header, claims = json.loads(_b64decode(head)), json.loads(_b64decode(body))
                raw = _b64decode(signature)
                if header["alg"] != "ES256" or len(raw) != 64:
                    return None
                r, s = int.from_bytes(raw[:32]), int.from_bytes(raw[32:])
                message = f"{head}.{body}".encode("ascii")
                self.published[header["kid"]].verify(
                    utils.encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256())
                )
                valid = claims["iss"] == self.issuer and claims["aud"] == self.platform.origin
                valid = valid and claims["nbf"] <= self.clock() < claims["exp"]
                subject = claims["sub"]
            except (ValueError, KeyError, TypeError, InvalidSignature):
                return None
            return subject if valid and isinstance(subject, str) else None

        def publish(jwks: Mapping[str, Any]) -> None:
            for jwk in jwks["keys"]:
                if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
                    x, y = (int.from_bytes(_b64decode(jwk[n])) for n in ("x", "y"))
                    numbers = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1())
                    self.published[jwk["kid"]] = numbers.public_key()

        self.verify = verify
        self.publish = publish

    def clock(self) -> float:
        return time.time() + self.skew

    def describe(self, info: PluginInfo | None) -> str:
        return (
            f"{super().describe(info)}: ES256 JWTs signed by a key made for this run, verified "
            "by the platform with the published JWKS"
        )

    def settings(self) -> dict[str, Any]:
        return {
            "keys": [{"pem": str(self.key_file), "kid": self.kid, "algorithm": "ES256"}],
            "issuer": self.issuer,
            "audience": self.platform.origin,
            "lifetime": _LIFETIME,
            "clock": self.clock,
        }

    def started(self, pipeline: AuthPipeline) -> None:
        plugin = pipeline.plugin_manager.get_plugin("jwt")
        assert plugin is not None
        self.publish(plugin.jwks())  # the company publishes its JWKS; the platform fetches it
        self.platform.accept = self.verify

    def expire(self) -> str:
        self.skew += _LIFETIME + 1
        return "a JWT past its exp (the clock moved on)"


_BACKENDS: dict[str, type[_Backend]] = {
    "app": _App,
    "static": _Static,
    "jwt": _Jwt,
    "oauth2": _OAuth2,
}


class _LoginScreen:
    """The app's login screen: the customer logs in once asked, then the app sets them."""

    def __init__(self, pipeline: AuthPipeline, backend: _Backend) -> None:
        self.pipeline = pipeline
        self.backend = backend
        self.logins: list[str] = []

    @hookimpl
    def on_login_required(self, customer: Customer | None, reason: str) -> bool | None:
        self.logins.append(reason)
        if self.backend.logs_in:
            return None  # the plugin's own login takes it
        # The customer logs in on another thread (a UI, a browser redirect); it sets the customer.
        threading.Timer(0.05, self.backend.login, (self.pipeline, "alice")).start()
        return True


class _ProviderCalls:
    """Records each time the pipeline asks for a customer's context, then passes (returns
    ``None``), so that the provider being shown answers."""

    def __init__(self) -> None:
        self.calls: dict[str, list[bool]] = {}
        self._lock = threading.Lock()

    @hookimpl(tryfirst=True)
    def provide_context(self, customer: Customer, needs_refresh: bool) -> None:
        with self._lock:
            self.calls.setdefault(customer.id, []).append(needs_refresh)

    def refreshes(self, customer_id: str) -> int:
        with self._lock:
            return sum(self.calls.get(customer_id, []))


class _Steps:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = 0
        self.number = 0

    def run(self, title: str, step: Callable[[], str]) -> None:
        self.number += 1
        started = time.perf_counter()
        try:
            detail = step()
        except Exception as exc:
            self.failed += 1
            line = f"FAIL  {type(exc).__name__}: {exc}"
        else:
            line = f"ok    {detail}"
        took = (time.perf_counter() - started) * 1000
        print(f"{self.number:>2}. {title:<46} {line}  ({took:.0f} ms)", file=self.out, flush=True)


def run(
    out: TextIO,
    concurrency: int = 50,
    provider: str = "app",
    client: str = "httpx",
    telemetry: bool = False,
) -> int:
    """Run every step with ``provider`` serving the customers, through a ``client`` of that kind
    (``_any_client.KINDS``); 0 when all behaved, 1 otherwise. With ``telemetry``, print the
    metrics the steps recorded at the end (it needs the OpenTelemetry SDK).

    A plugin ``provider`` must be installed (see ``missing_plugin``), and so must the client.
    """
    with recording(telemetry) as capture:
        code = _run(out, concurrency, provider, client)
    if capture is not None:
        print_table(capture, out)
    return code


def _run(out: TextIO, concurrency: int, provider: str, client: str) -> int:
    backend_type = _BACKENDS[provider]
    info = None
    if backend_type.plugin is not None:
        info = next(i for i in discover() if i.name == backend_type.plugin)
    platform = _Platform()
    with tempfile.TemporaryDirectory(prefix="asapp-auth-demo-") as tmp, platform:
        backend = backend_type(platform, Path(tmp))
        plugins = {} if backend.plugin is None else {backend.plugin: backend.settings()}
        pipeline = AuthPipeline(origins=[platform.origin], plugins=plugins)
        try:
            backend.started(pipeline)
            return _walk(
                out,
                concurrency,
                platform=platform,
                pipeline=pipeline,
                backend=backend,
                info=info,
                kind=client,
            )
        finally:
            backend.close(pipeline)


def _walk(
    out: TextIO,
    concurrency: int,
    *,
    platform: _Platform,
    pipeline: AuthPipeline,
    backend: _Backend,
    info: PluginInfo | None,
    kind: str,
) -> int:
    screen = _LoginScreen(pipeline, backend)
    pipeline.register(screen, name="demo-app")
    calls = _ProviderCalls()
    pipeline.register(calls, name="demo-provider-calls")
    pipeline.load()  # start anonymous, as a visitor who has not logged in
    print(f"asapp-auth demo: chat platform at {platform.url}, client {kind}", file=out)
    print(f"contexts from {backend.describe(info)}\n", file=out)
    steps = _Steps(out)
    client = open_client(kind, pipeline, pool=concurrency)
    url = platform.url

    def account() -> Any:
        response = client.get(f"{url}/v1/account")
        _check(response.status == 200, f"HTTP {response.status}")
        return response.json()

    def anonymous() -> str:
        response = client.get(f"{url}/public")
        sent = platform.received[-1].headers
        _check(response.status == 200, f"HTTP {response.status}")
        _check("Authorization" not in sent, "credentials were sent")
        return "HTTP 200, no credentials sent"

    def needs_login() -> str:
        answer = account()
        _check(screen.logins == ["anonymous"], f"login handler calls: {screen.logins}")
        _check(answer == {"customer": "alice"}, f"answered {answer}")
        return backend.login_story()

    def attached() -> str:
        context = pipeline.get_context()
        entry = pipeline.cached()
        sent = platform.received[-1].headers.get("Authorization", "")
        _check(context is not None and sent == f"Bearer {context.token}", "context not sent")
        _check(platform.received[-1].customer_id == "alice", "the platform did not accept it")
        by = "" if backend.plugin is None or entry is None else f" from {entry.plugin}"
        return f"Authorization: Bearer <redacted>; {context!r}{by}"

    def cached() -> str:
        for _ in range(20):
            account()
        _check(calls.calls["alice"] == [False], f"provider calls: {calls.calls['alice']}")
        return "20 requests, 1 provider call in all"

    def under_load() -> list[Result]:
        results = client.many(concurrency, f"{url}/v1/account")
        failed = [type(r).__name__ for r in results if not isinstance(r, Result)]
        _check(not failed, f"requests failed: {failed[:3]}")
        return [r for r in results if isinstance(r, Result)]

    def expiry() -> str:
        grants = backend.grants if isinstance(backend, _OAuth2) else 0
        what = backend.expire()
        results = under_load()
        statuses = {r.status for r in results}
        answers = {r.json().get("customer") for r in results}
        _check(statuses == {200} and answers == {"alice"}, f"statuses {statuses}")
        _check(calls.refreshes("alice") == 1, f"{calls.refreshes('alice')} refreshes")
        if isinstance(backend, _OAuth2):
            _check(backend.grants == grants + 1, f"{backend.grants - grants} refresh grants")
        new = {"jwt": "1 new JWT minted", "oauth2": "1 refresh-token grant"}.get(
            backend.plugin or "", "1 refresh"
        )
        return f"{concurrency} concurrent requests on {what}: {new}, all HTTP 200"

    def static_expired() -> str:
        backend.expire()
        try:
            client.get(f"{url}/v1/account")
        except TokenRejectedError as exc:
            _check(exc.status_code == 401, f"rejected with {exc.status_code}")
        else:
            raise AssertionError("a refused static token was not reported")
        _check(calls.refreshes("alice") == 1, f"{calls.refreshes('alice')} refreshes")
        return (
            "401 -> 1 refresh re-read the file: the same token, refused again -> "
            "TokenRejectedError (no loop)"
        )

    def static_rotated() -> str:
        assert isinstance(backend, _Static)
        backend.rotate()
        before = calls.refreshes("alice")
        results = under_load()
        statuses = {r.status for r in results}
        _check(statuses == {200}, f"statuses {statuses}")
        refreshes = calls.refreshes("alice") - before
        _check(refreshes == 1, f"{refreshes} refreshes")
        return f"{concurrency} concurrent requests: 1 refresh read the new token, all HTTP 200"

    def switch() -> str:
        backend.login(pipeline, "bob")
        if backend.serves is not None and "bob" not in backend.serves:
            sent = len(platform.received)
            try:
                client.get(f"{url}/v1/account")
            except NoProviderError:
                _check(len(platform.received) == sent, "a request went out for bob")
            else:
                raise AssertionError("bob's request went out with alice's token")
            return (
                f"set_customer('bob') -> {backend.plugin} serves only {list(backend.serves)}: "
                "NoProviderError, nothing sent"
            )
        answer = account()
        _check(answer == {"customer": "bob"}, f"answered {answer}")
        return backend.switch_story()

    def cleared() -> str:
        pipeline.clear()
        response = client.get(f"{url}/public")
        sent = platform.received[-1].headers
        _check(response.status == 200 and "Authorization" not in sent, "context sent")
        _check(pipeline.get_context() is None, "a context is still served")
        return "clear() -> anonymous again, nothing attached"

    def other_origin() -> str:
        with FakePlatform() as elsewhere:
            account()  # logs alice in again
            client.get(f"{url}/redirect?{urlencode({'to': f'{elsewhere.url}/public'})}")
            _check("Authorization" not in elsewhere.received[0].headers, "context leaked")
        return "a redirect to another origin carried no credentials"

    if isinstance(backend, _Static):
        expiry_steps = [
            ("token expires, file not rotated", static_expired),
            ("token file rotated under load", static_rotated),
        ]
    else:
        expiry_steps = [("token expires under load", expiry)]
    try:
        for title, step in (
            ("anonymous request", anonymous),
            ("request that needs a login", needs_login),
            ("context attached to platform requests", attached),
            ("context cached", cached),
            *expiry_steps,
            ("customer switch mid-session", switch),
            ("clear back to anonymous", cleared),
            ("redirect to another origin", other_origin),
        ):
            steps.run(title, step)
    finally:
        client.close()
    print(file=out)
    if steps.failed:
        print(f"{steps.failed} of {steps.number} steps did not behave", file=out)
        return 1
    print(f"all {steps.number} steps behaved", file=out)
    return 0
