"""OpenTelemetry metrics and spans for what the pipeline does (``docs/observability.md``).

``opentelemetry-api`` is optional (the ``otel`` extra). Without it, or while no meter or tracer
provider is configured, ``ACTIVE`` stays ``None``: the cached path pays one global read and a
branch; a slow path (a fetch, a login) looks the providers up again, so an app that configures
OpenTelemetry after its first request is seen from its next slow operation on. What is recorded
holds no token, secret, customer id or URL: attributes name an adapter, a plugin, a reason, an
outcome or an error type, from the short lists below.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import LoginRequiredError, ProviderTimeoutError

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is not installed: nothing is recorded
    _metrics = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

__all__ = ["ACTIVE", "METRICS", "PREFIX", "SPANS", "Recorder", "recorder", "use"]

PREFIX = "asapp_auth"

ADAPTER = f"{PREFIX}.adapter"
PLUGIN = f"{PREFIX}.plugin"
REASON = f"{PREFIX}.reason"
OUTCOME = f"{PREFIX}.outcome"
NEEDS_REFRESH = f"{PREFIX}.needs_refresh"
GRANT_TYPE = f"{PREFIX}.grant_type"
ERROR_TYPE = "error.type"  # the stable general semantic convention's name
RESEND_COUNT = "http.request.resend_count"  # the stable HTTP semantic convention's name
# Where httpx and httpx2 requests carry their resend count, for asapp_auth.otel's hooks.
RESEND_EXTENSION = "asapp_auth.resend_count"

# name: (kind, unit, attributes, when it is recorded). docs/observability.md shows this table and
# tests/test_telemetry.py keeps the two the same.
METRICS: Mapping[str, tuple[str, str, tuple[str, ...], str]] = {
    f"{PREFIX}.cache.hits": (
        "observable counter",
        "{request}",
        (ADAPTER,),
        "a request goes out with a fresh context read from the cache",
    ),
    f"{PREFIX}.cache.misses": (
        "counter",
        "{request}",
        (ADAPTER,),
        "a request finds no fresh context cached and asks for one",
    ),
    f"{PREFIX}.cache.coalesced_waits": (
        "counter",
        "{request}",
        (),
        "a request waits for another request's provider call instead of making its own",
    ),
    f"{PREFIX}.refreshes": (
        "counter",
        "{refresh}",
        (REASON,),
        "the providers are asked for a customer's context (one per flight)",
    ),
    f"{PREFIX}.rejections": (
        "counter",
        "{response}",
        (ADAPTER,),
        "the platform refuses a context (a 401, or a 431 for its size)",
    ),
    f"{PREFIX}.logins": (
        "counter",
        "{login}",
        (REASON, OUTCOME),
        "a login started by on_login_required ends",
    ),
    f"{PREFIX}.provider.errors": (
        "counter",
        "{error}",
        (PLUGIN, ERROR_TYPE),
        "a provider call fails (raised, timed out, or returned no usable context)",
    ),
    f"{PREFIX}.redirect.strips": (
        "counter",
        "{redirect}",
        (OUTCOME,),
        "a redirect to another origin has the context taken off it, or is stopped",
    ),
    f"{PREFIX}.provider.duration": (
        "histogram",
        "s",
        (PLUGIN, OUTCOME),
        "a provider call ends",
    ),
    f"{PREFIX}.token_endpoint.duration": (
        "histogram",
        "s",
        (PLUGIN, GRANT_TYPE, OUTCOME),
        "a provider plugin's call to its token endpoint ends",
    ),
    f"{PREFIX}.shared_cache.lock_wait.duration": (
        "histogram",
        "s",
        (OUTCOME,),
        "a process stops waiting for a customer's refresh lock in the shared cache",
    ),
    f"{PREFIX}.shared_cache.adoptions": (
        "counter",
        "{context}",
        (),
        "a process takes another process's context from the shared cache instead of refreshing",
    ),
}

# name: (attributes, when it is recorded). Every span is INTERNAL.
SPANS: Mapping[str, tuple[tuple[str, ...], str]] = {
    f"{PREFIX}.refresh": (
        (REASON, OUTCOME, ERROR_TYPE),
        "one flight's fetch: nothing cached, expired, rejected, or ahead of expiry",
    ),
    f"{PREFIX}.provide_context": (
        (PLUGIN, NEEDS_REFRESH, OUTCOME, ERROR_TYPE),
        "the providers are called, inside the refresh",
    ),
    f"{PREFIX}.login": (
        (REASON, OUTCOME, ERROR_TYPE),
        "from on_login_required until set_customer (or the login fails or times out)",
    ),
    f"{PREFIX}.token_request": (
        (PLUGIN, GRANT_TYPE, OUTCOME, ERROR_TYPE),
        "a provider plugin calls its token endpoint; the HTTP client span is its child",
    ),
    f"{PREFIX}.shared_cache.lock_wait": (
        (OUTCOME, ERROR_TYPE),
        "a process waits for a customer's refresh lock in the shared cache",
    ),
    f"{PREFIX}.shared_cache.adopt": (
        (),
        "a process takes another process's context from the shared cache",
    ),
}


class Recorder:
    """The instruments and tracer of one meter and tracer provider."""

    def __init__(self, meter_provider: Any, tracer_provider: Any) -> None:
        # Imported here: the package's __init__ imports this module through the pipeline.
        from . import __version__  # noqa: PLC0415

        self.providers = (meter_provider, tracer_provider)
        meter = meter_provider.get_meter(PREFIX, __version__)
        self.tracer = tracer_provider.get_tracer(PREFIX, __version__)
        # The cached path's count: an itertools.count per adapter, whose next() is one atomic C
        # call, read when the SDK collects. A synchronous counter's add() costs more than the
        # rest of the cached path (attributes hashed, a lock, an aggregation per call).
        self._hits: dict[str, Iterator[int]] = {}
        self._hit_reads: dict[str, int] = {}
        self._reads_lock = threading.Lock()
        self._instruments: dict[str, Any] = {}
        for name, (kind, unit, _, when) in METRICS.items():
            if kind == "observable counter":
                meter.create_observable_counter(
                    name, callbacks=[self._observe_hits], unit=unit, description=when
                )
                continue
            make = meter.create_counter if kind == "counter" else meter.create_histogram
            self._instruments[name] = make(name, unit=unit, description=when)

    def hit(self, adapter: str) -> None:
        """The cached path's one call."""
        counter = self._hits.get(adapter)
        if counter is None:
            counter = self._hits.setdefault(adapter, itertools.count())
        next(counter)

    def _observe_hits(self, options: Any) -> list[Any]:
        seen = []
        with self._reads_lock:  # one reader's collection at a time
            for adapter, counter in list(self._hits.items()):
                # Each read advances the count by one too: take the reads so far off.
                reads = self._hit_reads.get(adapter, 0)
                self._hit_reads[adapter] = reads + 1
                seen.append(_metrics.Observation(next(counter) - reads, {ADAPTER: adapter}))
        return seen

    def add(self, name: str, attributes: Mapping[str, str] | None = None, amount: int = 1) -> None:
        self._instruments[f"{PREFIX}.{name}"].add(amount, attributes)

    def record(self, name: str, seconds: float, attributes: Mapping[str, str]) -> None:
        self._instruments[f"{PREFIX}.{name}"].record(seconds, attributes)

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
        """An INTERNAL span, current inside the block. An exception sets the span's status and
        ``error.type`` only: its message may name a customer, and is not recorded."""
        with self.tracer.start_as_current_span(
            f"{PREFIX}.{name}",
            kind=_trace.SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                failed(span, exc)
                raise

    def start(self, name: str, attributes: Mapping[str, Any]) -> Any:
        """An INTERNAL span that outlives the block that starts it (a login); ``end`` ends it."""
        return self.tracer.start_span(
            f"{PREFIX}.{name}", kind=_trace.SpanKind.INTERNAL, attributes=attributes
        )


def failed(span: Any, exc: BaseException) -> None:
    """Mark ``span`` failed with ``exc``'s type (never its message)."""
    span.set_attribute(ERROR_TYPE, type(exc).__name__)
    span.set_status(_trace.StatusCode.ERROR)


ACTIVE: Recorder | None = None
_chosen: tuple[Any, Any] | None = None


def _configured(provider: Any, *unset: type) -> bool:
    # The API hands out a proxy (or a no-op) until an SDK's provider is set.
    return not isinstance(provider, unset) and type(provider).__name__ != "_ProxyMeterProvider"


def recorder() -> Recorder | None:
    """The recorder for the providers configured now, or ``None`` (off the cached path only)."""
    global ACTIVE
    if _chosen is not None:
        return ACTIVE
    if _metrics is None:
        return None
    meters = _metrics.get_meter_provider()
    tracers = _trace.get_tracer_provider()
    on = _configured(meters, _metrics.NoOpMeterProvider) or _configured(
        tracers, _trace.ProxyTracerProvider, _trace.NoOpTracerProvider
    )
    if not on:
        ACTIVE = None
    elif ACTIVE is None or ACTIVE.providers != (meters, tracers):
        ACTIVE = Recorder(meters, tracers)
    return ACTIVE


def chosen() -> tuple[Any, Any] | None:
    """The providers ``use`` chose, or ``None`` while the global ones are used."""
    return _chosen


def use(meter_provider: Any = None, tracer_provider: Any = None) -> None:
    """Record to these providers rather than the global ones (tests, ``asapp-auth demo``);
    ``use()`` goes back to the global ones."""
    global ACTIVE, _chosen
    if meter_provider is None and tracer_provider is None:
        _chosen = None
        ACTIVE = None
        recorder()
        return
    if _metrics is None:
        raise RuntimeError(
            "recording telemetry needs opentelemetry-api: pip install 'asapp-auth[otel]'"
        )
    _chosen = (
        meter_provider or _metrics.NoOpMeterProvider(),
        tracer_provider or _trace.NoOpTracerProvider(),
    )
    ACTIVE = Recorder(*_chosen)


# -- what the pipeline's parts call (each a no-op while nothing is recorded) --------------------


def count(name: str, attributes: Mapping[str, str] | None = None) -> None:
    rec = recorder()
    if rec is not None:
        rec.add(name, attributes)


def hit(adapter: str) -> None:
    rec = recorder()
    if rec is not None:
        rec.hit(adapter)


class _NoSpan:
    """What a block is handed while no span is recorded."""

    outcome: str | None = None

    def set_attribute(self, key: str, value: object) -> None:
        pass


_NO_SPAN = _NoSpan()


@contextmanager
def operation(name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
    """A span named ``name`` around the block, with ``outcome`` "ok" or "error"."""
    rec = recorder()
    if rec is None:
        yield _NO_SPAN
        return
    with rec.span(name, attributes) as span:
        try:
            yield span
        except BaseException:
            span.set_attribute(OUTCOME, "error")
            raise
        span.set_attribute(OUTCOME, "ok")


def plugin_label(name: str, plugin: object) -> str:
    """The ``asapp_auth.plugin`` value of a plugin registered as ``name``: its name, or its
    class's qualified name when pluggy named it by object id (one series per class, not per
    instance)."""
    return type(plugin).__qualname__ if name.isdigit() else name


class ProviderCall:
    """One provider call being recorded: the block sets ``plugin`` to the label of the plugin
    being asked (``plugin_label``), ``none`` when none answered."""

    __slots__ = ("plugin",)

    def __init__(self) -> None:
        self.plugin = "none"


@contextmanager
def provider_call(needs_refresh: bool) -> Iterator[ProviderCall]:
    """The ``provide_context`` span and the provider duration, around the providers' call."""
    call = ProviderCall()
    rec = recorder()
    if rec is None:
        yield call
        return
    started = time.monotonic()
    outcome = "ok"
    with rec.span("provide_context", {NEEDS_REFRESH: needs_refresh}) as span:
        try:
            yield call
        except BaseException as exc:
            outcome = "login_required" if isinstance(exc, LoginRequiredError) else "error"
            raise
        finally:
            span.set_attribute(PLUGIN, call.plugin)
            span.set_attribute(OUTCOME, outcome)
            rec.record(
                "provider.duration",
                time.monotonic() - started,
                {PLUGIN: call.plugin, OUTCOME: outcome},
            )


def refresh_reason(ahead: bool, rejected: bool, none_cached: bool) -> str:
    if ahead:
        return "ahead"
    if rejected:
        return "rejected"
    return "none_cached" if none_cached else "expired"


def fetch_failed(error: BaseException, call: ProviderCall | None) -> None:
    """A flight's fetch failed: a provider error, unless it says a login is needed. It is
    counted under the label of the plugin ``call`` was asking, not the error's own ``plugin``
    (a plugin may put anything there)."""
    if isinstance(error, LoginRequiredError):
        return
    named = getattr(error, "plugin", None) is not None
    plugin = call.plugin if named and call is not None else "none"
    count("provider.errors", {PLUGIN: plugin, ERROR_TYPE: type(error).__name__})


class LoginWatch:
    """The span and count of one login, ended by its flight (``Flight.watch``)."""

    __slots__ = ("_reason", "_rec", "_span", "outcome")

    def __init__(self, rec: Recorder, reason: str) -> None:
        self._rec = rec
        self._reason = reason
        self._span = rec.start("login", {REASON: reason})
        # Set by the login's runner when it fails it; a failure without one is the timeout.
        self.outcome: str | None = None

    def finished(self, error: BaseException | None) -> None:
        outcome = "ok" if error is None else self.outcome or "timeout"
        self._span.set_attribute(OUTCOME, outcome)
        if error is not None:
            failed(self._span, error)
        self._span.end()
        self._rec.add("logins", {REASON: self._reason, OUTCOME: outcome})


def watch_login(reason: str) -> LoginWatch | None:
    rec = recorder()
    return None if rec is None else LoginWatch(rec, reason)


class LockWait:
    """A shared-cache lock wait being recorded: "acquired" unless the block says otherwise."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = "acquired"


@contextmanager
def lock_wait() -> Iterator[LockWait]:
    wait = LockWait()
    rec = recorder()
    if rec is None:
        yield wait
        return
    started = time.monotonic()
    with rec.span("shared_cache.lock_wait", {}) as span:
        try:
            yield wait
        except BaseException as exc:
            wait.outcome = "timeout" if isinstance(exc, ProviderTimeoutError) else "error"
            raise
        finally:
            span.set_attribute(OUTCOME, wait.outcome)
            rec.record(
                "shared_cache.lock_wait.duration",
                time.monotonic() - started,
                {OUTCOME: wait.outcome},
            )


@contextmanager
def token_request(plugin: str, grant_type: str) -> Iterator[None]:
    """The ``token_request`` span and the token-endpoint duration, around a plugin's call."""
    rec = recorder()
    if rec is None:
        yield
        return
    started = time.monotonic()
    outcome = "ok"
    attributes = {PLUGIN: plugin, GRANT_TYPE: grant_type}
    with rec.span("token_request", attributes) as span:
        try:
            yield
        except BaseException:
            outcome = "error"
            raise
        finally:
            span.set_attribute(OUTCOME, outcome)
            seconds = time.monotonic() - started
            rec.record("token_endpoint.duration", seconds, {**attributes, OUTCOME: outcome})


def adopted() -> None:
    """A context taken from the shared cache: counted, and a span of its own (no duration to
    speak of: the Redis read that found it is part of the refresh or lock wait around it)."""
    rec = recorder()
    if rec is not None:
        rec.add("shared_cache.adoptions")
        rec.start("shared_cache.adopt", {}).end()
