"""OpenTelemetry: each metric and span of docs/observability.md, from a scenario that causes it,
with the OpenTelemetry SDK's in-memory reader and exporter (the ``telemetry`` fixture)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind, StatusCode
from redis_helpers import Minter, Target

from asapp_auth import AuthContext, AuthPipeline, Customer, hookimpl, otel
from asapp_auth import _telemetry as telemetry_module
from asapp_auth.errors import LoginRequiredError, ProviderError
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RecordingProvider, RedisServer, TelemetryCapture

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "observability.md"
HITS = "asapp_auth.cache.hits"
MISSES = "asapp_auth.cache.misses"


def _expire(pipeline: AuthPipeline, customer: str = "alice") -> None:
    """Make the cached context expired, as if its lifetime had passed."""
    entry = pipeline._cache.get(pipeline._state[0].cache_key)  # type: ignore[union-attr]
    assert entry is not None
    entry.expires_at = entry.valid_until = 0.0


def _attributes(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- the docs table ---------------------------------------------------------------------------


def _documented_rows() -> dict[str, tuple[str, str, str, str]]:
    """The observability page's table: name -> (kind, unit, attributes, when)."""
    rows = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`asapp_auth."):
            rows[cells[0].strip("`")] = (cells[1], cells[2], cells[3], cells[4])
    return rows


def _expected_rows() -> dict[str, tuple[str, str, str, str]]:
    def names(attributes: tuple[str, ...]) -> str:
        return ", ".join(f"`{a}`" for a in attributes) or "none"

    rows = {
        name: (kind, f"`{unit}`", names(attributes), when)
        for name, (kind, unit, attributes, when) in telemetry_module.METRICS.items()
    }
    for name, (attributes, when) in telemetry_module.SPANS.items():
        rows[name] = ("span", "none", names(attributes), when)
    return rows


def test_observability_page_table_matches_the_code() -> None:
    """Every metric and span the code records is in the docs table as it is, and no other."""
    assert _documented_rows() == _expected_rows()


def test_every_name_in_the_table_is_produced_by_a_test() -> None:
    """Each metric and span name is asserted by a scenario here or in the oauth2 plugin's tests."""
    sources = Path(__file__).read_text(encoding="utf-8") + (
        ROOT / "plugins/asapp-auth-oauth2/tests/test_telemetry.py"
    ).read_text(encoding="utf-8")
    asserted = set(re.findall(r'(?:value|spans)\(\s*"(asapp_auth\.[a-z_.]+)"', sources))
    asserted |= {HITS, MISSES}
    assert set(_expected_rows()) <= asserted


def test_names_and_attributes_share_one_prefix() -> None:
    """Every name is under ``asapp_auth.``; attributes too, bar the semantic conventions' own."""
    rows = _expected_rows()
    assert all(name.startswith("asapp_auth.") for name in rows)
    attributes = set(re.findall(r"`([^`]+)`", " ".join(r[2] for r in rows.values())))
    assert {a for a in attributes if not a.startswith("asapp_auth.")} == {"error.type"}


# -- scenarios ---------------------------------------------------------------------------------


def test_a_cached_context_counts_hits_and_one_miss(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """Three requests: one miss (the first fetch, with its spans), then two hits."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    with httpx.Client(auth=pipeline) as client:
        for _ in range(3):
            assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert telemetry.value(MISSES, adapter="httpx") == 1
    assert telemetry.value(HITS, adapter="httpx") == 2
    assert telemetry.value("asapp_auth.refreshes", reason="none_cached") == 1
    assert (
        telemetry.value("asapp_auth.provider.duration", plugin="customer-provider", outcome="ok")
        == 1
    )
    (refresh,) = telemetry.spans("asapp_auth.refresh")
    (call,) = telemetry.spans("asapp_auth.provide_context")
    assert refresh.kind is SpanKind.INTERNAL
    assert call.kind is SpanKind.INTERNAL
    assert _attributes(refresh) == {"asapp_auth.reason": "none_cached", "asapp_auth.outcome": "ok"}
    assert _attributes(call) == {
        "asapp_auth.needs_refresh": False,
        "asapp_auth.plugin": "customer-provider",
        "asapp_auth.outcome": "ok",
    }
    assert call.parent is not None
    assert call.parent.span_id == refresh.context.span_id


def test_an_expired_context_is_a_miss_and_a_refresh(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """A context past its expiry: the next request misses and the provider is asked again."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        _expire(pipeline)
        client.get(f"{platform.url}/v1/account")
    assert telemetry.value(MISSES, adapter="httpx") == 2
    assert telemetry.value("asapp_auth.refreshes", reason="expired") == 1
    needs = [
        _attributes(s)["asapp_auth.needs_refresh"]
        for s in telemetry.spans()
        if s.name == "asapp_auth.provide_context"
    ]
    assert needs == [False, True]


def test_a_rejection_is_counted_and_the_resend_carries_its_count(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """A 401: one rejection, a refresh for it, and the retried request's client span (from the
    httpx instrumentation, with asapp_auth.otel's hooks) says http.request.resend_count=1."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    with httpx.Client(auth=pipeline) as client:
        HTTPXClientInstrumentor().instrument_client(
            client, tracer_provider=telemetry.tracer_provider, request_hook=otel.request_hook
        )
        client.get(f"{platform.url}/v1/account")
        platform.expire()
        assert client.get(f"{platform.url}/v1/account").status_code == 200
    assert telemetry.value("asapp_auth.rejections", adapter="httpx") == 1
    assert telemetry.value("asapp_auth.refreshes", reason="rejected") == 1
    (rejected,) = [
        s
        for s in telemetry.spans("asapp_auth.refresh")
        if _attributes(s)["asapp_auth.reason"] == "rejected"
    ]
    assert _attributes(rejected)["asapp_auth.outcome"] == "ok"
    sends = [s for s in telemetry.spans() if s.kind is SpanKind.CLIENT]
    assert [_attributes(s).get("http.request.resend_count") for s in sends] == [None, None, 1]


def test_an_async_resend_carries_its_count(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """The async hook sets http.request.resend_count on an AsyncClient's retried request."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))

    async def main() -> None:
        async with httpx.AsyncClient(auth=pipeline) as client:
            HTTPXClientInstrumentor().instrument_client(
                client,
                tracer_provider=telemetry.tracer_provider,
                request_hook=otel.async_request_hook,
            )
            await client.get(f"{platform.url}/v1/account")
            platform.expire()
            await client.get(f"{platform.url}/v1/account")

    asyncio.run(main())
    sends = [s for s in telemetry.spans() if s.kind is SpanKind.CLIENT]
    assert [_attributes(s).get("http.request.resend_count") for s in sends] == [None, None, 1]


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_a_resent_request_carries_its_count_in_its_extensions(
    module: str, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """httpx and httpx2 alike: the request sent again after a 401 has its resend count where the
    instrumentation's hooks read it; a request sent once has none."""
    client_module = pytest.importorskip(module)
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    if module == "httpx":
        auth: Any = pipeline
    else:
        from asapp_auth.httpx2 import Httpx2Auth

        auth = Httpx2Auth(pipeline)
    with client_module.Client(auth=auth) as client:
        first = client.get(f"{platform.url}/v1/account")
        platform.expire()
        resent = client.get(f"{platform.url}/v1/account")
    assert "asapp_auth.resend_count" not in first.request.extensions
    assert resent.status_code == 200
    assert resent.request.extensions["asapp_auth.resend_count"] == 1


class _Raises:
    def __call__(self, needs_refresh: bool) -> AuthContext:
        raise ValueError("the s3cr3t store for alice is down")


def test_a_provider_error_is_counted_by_plugin_and_type_without_its_message(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """A provider that raises: provider.errors by plugin and error type; the spans fail with
    the error's type and no message (it names the customer)."""
    pipeline.load("alice", _Raises())
    with httpx.Client(auth=pipeline) as client, pytest.raises(ProviderError):
        client.get(f"{platform.url}/v1/account")
    assert (
        telemetry.value(
            "asapp_auth.provider.errors", plugin="customer-provider", error_type="ProviderError"
        )
        == 1
    )
    assert (
        telemetry.value("asapp_auth.provider.duration", plugin="customer-provider", outcome="error")
        == 1
    )
    for span in (
        *telemetry.spans("asapp_auth.provide_context"),
        *telemetry.spans("asapp_auth.refresh"),
    ):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is None
        assert span.events == ()
        assert _attributes(span)["asapp_auth.outcome"] == "error"
        assert _attributes(span)["error.type"] == "ProviderError"


class _LogsIn:
    """An on_login_required handler that sets alice from another thread, or declines."""

    def __init__(self, pipeline: AuthPipeline, provider: Any, accept: bool = True) -> None:
        self.pipeline, self.provider, self.accept = pipeline, provider, accept

    @hookimpl
    def on_login_required(self, customer: Customer | None, reason: str) -> bool:
        if not self.accept:
            return False
        threading.Thread(target=self.pipeline.set_customer, args=("alice", self.provider)).start()
        return True


def test_a_login_is_a_span_until_set_customer_and_a_count_by_outcome(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """An anonymous request that needs a login: one login span, ended by set_customer."""
    pipeline.register(_LogsIn(pipeline, RecordingProvider(platform, "alice")))
    pipeline.load()
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "alice"}
    assert telemetry.value("asapp_auth.logins", reason="anonymous", outcome="ok") == 1
    (login,) = telemetry.spans("asapp_auth.login")
    assert login.kind is SpanKind.INTERNAL
    assert _attributes(login) == {"asapp_auth.reason": "anonymous", "asapp_auth.outcome": "ok"}
    assert login.end_time is not None
    assert login.end_time >= login.start_time


def test_a_declined_login_is_counted_as_declined(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """A handler that declines: the login ends "declined", its span failed."""
    pipeline.register(_LogsIn(pipeline, None, accept=False))
    pipeline.load()
    with httpx.Client(auth=pipeline) as client, pytest.raises(LoginRequiredError):
        client.get(f"{platform.url}/v1/account")
    assert telemetry.value("asapp_auth.logins", reason="anonymous", outcome="declined") == 1
    (login,) = telemetry.spans("asapp_auth.login")
    assert login.status.status_code is StatusCode.ERROR


def test_a_refresh_ahead_is_a_refresh_of_its_own_reason(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """A context due for refresh ahead: served from the cache, and refreshed in the background."""
    release = threading.Event()
    provider = RecordingProvider(platform, "alice")

    def blocking(needs_refresh: bool) -> AuthContext:
        if provider.calls:
            release.wait(30)
        return provider(needs_refresh)

    pipeline.load("alice", blocking)
    with httpx.Client(auth=pipeline) as client:
        client.get(f"{platform.url}/v1/account")
        customer = pipeline._state[0]
        assert customer is not None
        entry = pipeline._cache.get(customer.cache_key)
        assert entry is not None
        entry.refresh_at = 0.0
        assert client.get(f"{platform.url}/v1/account").status_code == 200
        flight = pipeline._inflight[customer.cache_key]
        release.set()
        flight.wait()
    assert telemetry.value(HITS, adapter="httpx") == 1
    assert telemetry.value("asapp_auth.refreshes", reason="ahead") == 1
    reasons = [_attributes(s)["asapp_auth.reason"] for s in telemetry.spans("asapp_auth.refresh")]
    assert reasons == ["none_cached", "ahead"]


def test_a_redirect_elsewhere_counts_a_strip(
    telemetry: TelemetryCapture,
    platform: FakePlatform,
    elsewhere: FakePlatform,
    pipeline: AuthPipeline,
) -> None:
    """A redirect to another origin has the context's header taken off: one strip, "removed"."""
    token = platform.issue_token("alice")
    pipeline.load("alice", lambda n: {"Auth": {"Token": token, "Headers": {"X-Session": "hdr"}}})
    with httpx.Client(auth=pipeline, follow_redirects=True) as client:
        client.get(f"{platform.url}/redirect", params={"to": f"{elsewhere.url}/public"})
    assert "X-Session" not in elsewhere.received[-1].headers
    assert telemetry.value("asapp_auth.redirect.strips", outcome="removed") == 1


def test_1000_tasks_on_an_expired_context_make_one_refresh_and_999_coalesced_waits(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """1,000 tasks ask for an expired context together: one refresh, 999 wait for it."""
    release = threading.Event()
    provider = RecordingProvider(platform, "alice")

    def blocking(needs_refresh: bool) -> AuthContext:
        if provider.calls:
            release.wait(60)
        return provider(needs_refresh)

    pipeline.load("alice", blocking)
    pipeline.get_context()
    _expire(pipeline)

    async def main() -> list[str | None]:
        tasks = [asyncio.ensure_future(pipeline.aget_context()) for _ in range(1000)]
        # Tasks start in the order they were made: this one runs once all 1,000 wait.
        asyncio.get_running_loop().call_soon(release.set)
        return [c.token if c else None for c in await asyncio.gather(*tasks)]

    tokens = asyncio.run(main())
    assert len(set(tokens)) == 1
    assert tokens[0] == provider.tokens[1]
    assert telemetry.value("asapp_auth.refreshes") == 2
    assert telemetry.value("asapp_auth.refreshes", reason="expired") == 1
    assert telemetry.value("asapp_auth.cache.coalesced_waits") == 999
    assert len(telemetry.spans("asapp_auth.provide_context")) == 2


def test_shared_cache_lock_wait_and_adoption(
    telemetry: TelemetryCapture,
    platform: FakePlatform,
    redis_server: RedisServer,
    namespace: str,
) -> None:
    """Two processes on one Redis: the first takes the lock and refreshes; the second adopts."""
    target, key = Target(redis_server.url, cluster=False), generate_key()
    minter = Minter(platform, "alice")
    first = AuthPipeline([platform.origin], cache=target.cache(namespace, key))
    second = AuthPipeline([platform.origin], cache=target.cache(namespace, key))
    first.load("alice", minter)
    second.load("alice", minter)
    assert first.get_context().token == second.get_context().token  # type: ignore[union-attr]
    assert minter.calls == [False]
    assert telemetry.value("asapp_auth.shared_cache.lock_wait.duration", outcome="acquired") == 1
    assert telemetry.value("asapp_auth.shared_cache.adoptions") == 1
    (wait,) = telemetry.spans("asapp_auth.shared_cache.lock_wait")
    assert _attributes(wait) == {"asapp_auth.outcome": "acquired"}
    (adopt,) = telemetry.spans("asapp_auth.shared_cache.adopt")
    refreshes = telemetry.spans("asapp_auth.refresh")
    assert adopt.parent is not None
    assert adopt.parent.span_id == refreshes[1].context.span_id


def test_an_async_refresh_is_a_child_of_the_callers_span(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """Under asyncio the refresh runs in a worker thread, in the caller's context: its span is a
    child of the span current where the context was asked for."""
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    tracer = telemetry.tracer_provider.get_tracer("app")

    async def main() -> None:
        with tracer.start_as_current_span("app request"):
            await pipeline.aget_context()

    asyncio.run(main())
    (app,) = telemetry.spans("app request")
    (refresh,) = telemetry.spans("asapp_auth.refresh")
    assert refresh.parent is not None
    assert refresh.parent.span_id == app.context.span_id


def test_cache_hits_from_many_threads_add_up_while_collected(
    telemetry: TelemetryCapture,
) -> None:
    """8 threads count 5,000 hits each while another thread collects: exactly 40,000."""
    recorder = telemetry_module.ACTIVE
    assert recorder is not None
    start = threading.Barrier(9)
    done = threading.Event()

    def hits() -> None:
        start.wait()
        for _ in range(5000):
            recorder.hit("httpx")

    def collect() -> None:
        start.wait()
        while not done.is_set():
            telemetry.points()

    threads = [threading.Thread(target=hits) for _ in range(8)]
    collector = threading.Thread(target=collect)
    for thread in (*threads, collector):
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    collector.join()
    assert telemetry.value(HITS, adapter="httpx") == 40_000
    assert telemetry.value(HITS, adapter="httpx") == 40_000  # a read changes nothing


# -- costs and switches -------------------------------------------------------------------------


def test_nothing_is_recorded_without_a_configured_provider(
    telemetry: TelemetryCapture, platform: FakePlatform, pipeline: AuthPipeline
) -> None:
    """With the global providers unset (the API's proxies), the cached path has no recorder."""
    telemetry.__exit__()
    try:
        pipeline.load("alice", RecordingProvider(platform, "alice"))
        with httpx.Client(auth=pipeline) as client:
            client.get(f"{platform.url}/v1/account")
            assert telemetry_module.ACTIVE is None
            client.get(f"{platform.url}/v1/account")
    finally:
        telemetry.__enter__()
    assert telemetry.points() == {}


def test_the_core_works_without_the_opentelemetry_api(tmp_path: Path) -> None:
    """With opentelemetry not importable, requests go through and nothing is recorded."""
    script = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import httpx
from asapp_auth import AuthPipeline, _telemetry
from asapp_auth.testing import FakePlatform, RecordingProvider
with FakePlatform() as platform:
    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("alice", RecordingProvider(platform, "alice"))
    with httpx.Client(auth=pipeline) as client:
        codes = [client.get(platform.url + "/v1/account").status_code for _ in range(2)]
assert codes == [200, 200], codes
assert _telemetry.recorder() is None and _telemetry.ACTIVE is None
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


class _TenantProvider:
    """A provider plugin that apps register without a name, one instance per tenant."""

    def __init__(self, claimed: str | None = None) -> None:
        self.claimed = claimed

    @hookimpl
    def provide_context(self, customer: Customer) -> AuthContext:
        raise ProviderError("upstream down", plugin=self.claimed)


def _fail_once(plugin: object, name: str | None = None) -> None:
    with AuthPipeline(origins=["https://api.chat.example"]) as pipeline:
        pipeline.register(plugin, name=name)
        pipeline.set_customer("cust@example.com")
        with pytest.raises(ProviderError):
            pipeline.get_context()


def _plugin_labels(telemetry: TelemetryCapture) -> set[str]:
    return {
        attrs["asapp_auth.plugin"]
        for metric in ("asapp_auth.provider.errors", "asapp_auth.provider.duration")
        for attrs, _ in telemetry.points()[metric]
    } | {
        _attributes(span)["asapp_auth.plugin"]
        for span in telemetry.spans()
        if span.name == "asapp_auth.provide_context"
    }


def test_a_plugin_registered_without_a_name_is_labelled_by_its_class(
    telemetry: TelemetryCapture,
) -> None:
    """Instances registered without a name (pluggy names them by id) share one series: their
    class's qualified name."""
    for _ in range(3):
        _fail_once(_TenantProvider())
    assert _plugin_labels(telemetry) == {"_TenantProvider"}
    assert telemetry.value("asapp_auth.provider.errors", plugin="_TenantProvider") == 3


def test_a_plugin_error_naming_anything_is_labelled_by_the_registered_plugin(
    telemetry: TelemetryCapture,
) -> None:
    """The ``plugin`` a plugin puts on its own error reaches telemetry only when it is a
    registered plugin's name; otherwise the error counts under the plugin that raised it."""
    for tenant in range(3):
        _fail_once(_TenantProvider(claimed=f"tenant-{tenant}"), name="tenants")
    _fail_once(_TenantProvider(claimed="tenants"))
    assert _plugin_labels(telemetry) == {"tenants", "_TenantProvider"}
    assert telemetry.value("asapp_auth.provider.errors", plugin="tenants") == 3
