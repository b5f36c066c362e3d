"""``asapp-auth demo --telemetry``: what the demo's steps recorded, as a short table.

The demo records to an in-memory OpenTelemetry SDK (``TelemetryCapture``), whatever the machine's
global providers are, and prints each metric's series at the end: counters as totals, histograms
as a count and a mean in milliseconds.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from ._otel_capture import TelemetryCapture
from ._telemetry import PREFIX

__all__ = ["missing_sdk", "print_table", "recording"]


def missing_sdk() -> str | None:
    """Why ``demo --telemetry`` cannot run (one line, saying what to do), or ``None``."""
    if importlib.util.find_spec("opentelemetry") is None or (
        importlib.util.find_spec("opentelemetry.sdk") is None
    ):
        return "demo --telemetry needs the OpenTelemetry SDK: pip install opentelemetry-sdk"
    return None


@contextmanager
def recording(enabled: bool) -> Iterator[TelemetryCapture | None]:
    if not enabled:
        yield None
        return
    with TelemetryCapture() as capture:
        yield capture


def print_table(capture: TelemetryCapture, out: TextIO) -> None:
    """One line per metric series: name (prefix dropped), attributes, value."""
    rows = []
    for name, points in sorted(capture.points().items()):
        for attributes, point in points:
            labels = ", ".join(
                f"{key.removeprefix(PREFIX + '.')}={value}"
                for key, value in sorted(attributes.items())
            )
            if hasattr(point, "count"):
                mean = point.sum / point.count * 1000 if point.count else 0.0
                value = f"{point.count} (mean {mean:.1f} ms)"
            else:
                value = str(point.value)
            rows.append((name.removeprefix(PREFIX + "."), labels, value))
    spans = len(capture.spans())
    print(f"\nrecorded (OpenTelemetry, {spans} spans):", file=out)
    width = max((len(n) for n, _, _ in rows), default=0)
    labels_width = max((len(a) for _, a, _ in rows), default=0)
    for name, labels, value in rows:
        print(f"  {name:<{width}}  {labels:<{labels_width}}  {value}", file=out)
