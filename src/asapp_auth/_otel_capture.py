"""``TelemetryCapture``: what the pipeline reports to OpenTelemetry, kept in memory for a test.

It needs ``opentelemetry-sdk`` (the app's or the test's own dependency; asapp-auth's ``otel`` extra
brings the API only). Inside ``with TelemetryCapture() as seen:`` every pipeline records to the
capture's own meter and tracer providers, whatever the global ones are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import _telemetry

__all__ = ["TelemetryCapture"]


class TelemetryCapture:
    """The spans and metric points recorded while it is entered."""

    def __init__(self) -> None:
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
        except ImportError as exc:
            raise RuntimeError(
                "TelemetryCapture needs the OpenTelemetry SDK: pip install opentelemetry-sdk"
            ) from exc
        self._reader = InMemoryMetricReader()
        self._exporter = InMemorySpanExporter()
        self.meter_provider = MeterProvider(metric_readers=[self._reader])
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        self._outer: tuple[Any, Any] | None = None

    def __enter__(self) -> TelemetryCapture:
        self._outer = _telemetry.chosen()
        _telemetry.use(self.meter_provider, self.tracer_provider)
        return self

    def __exit__(self, *exc: object) -> None:
        # Back to what was recorded to before: an outer capture's providers, or the global ones.
        _telemetry.use(*(self._outer or ()))

    def spans(self, name: str | None = None) -> list[Any]:
        """The finished spans (``ReadableSpan``), oldest first; only ``name``'s if given."""
        finished = list(self._exporter.get_finished_spans())
        return [s for s in finished if name is None or s.name == name]

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Each metric's data points so far, as (attributes, point), by metric name."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self._reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(
                        (dict(p.attributes or {}), p) for p in metric.data.data_points
                    )
        return found

    def value(self, name: str, **attributes: Any) -> float:
        """A counter's total, or a histogram's count, over the points whose attributes include
        ``attributes`` (keys without the ``asapp_auth.`` prefix, ``error_type`` for
        ``error.type``)."""
        wanted = {_key(k): v for k, v in attributes.items()}
        total = 0.0
        for have, point in self.points().get(name, []):
            if all(have.get(k) == v for k, v in wanted.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total

    def texts(self) -> Iterator[str]:
        """Every name, attribute key and value, and event recorded: for a secrets scan."""
        for span in self.spans():
            yield span.name
            for key, value in (span.attributes or {}).items():
                yield f"{key}={value}"
            for event in span.events:
                yield event.name
                for key, value in (event.attributes or {}).items():
                    yield f"{key}={value}"
            if span.status.description:
                yield span.status.description
        for name, points in self.points().items():
            for attributes, _ in points:
                for key, value in attributes.items():
                    yield f"{name} {key}={value}"

    def undocumented(self) -> list[str]:
        """What was recorded under asapp-auth's prefix that its table does not list: names,
        and attributes a name is not documented with."""
        found = []
        prefix = f"{_telemetry.PREFIX}."
        for span in self.spans():
            if span.name.startswith(prefix):
                known = _telemetry.SPANS.get(span.name, ((), ""))[0]
                extra = set(span.attributes or {}) - set(known)
                if span.name not in _telemetry.SPANS or extra:
                    found.append(f"span {span.name} {sorted(extra)}")
        for name, points in self.points().items():
            if name.startswith(prefix):
                known = _telemetry.METRICS.get(name, ("", "", (), ""))[2]
                for attributes, _ in points:
                    extra = set(attributes) - set(known)
                    if name not in _telemetry.METRICS or extra:
                        found.append(f"metric {name} {sorted(extra)}")
        return found


def _key(name: str) -> str:
    return "error.type" if name == "error_type" else f"{_telemetry.PREFIX}.{name}"
