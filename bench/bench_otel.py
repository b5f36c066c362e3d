"""Cached-path cost of OpenTelemetry: without the API, with it and no provider, with an SDK.

Each variant runs in a process of its own (the global providers can be set only once):
``no otel`` hides ``opentelemetry`` as if the ``otel`` extra were not installed; ``API, no
provider`` imports it and configures nothing; ``SDK configured`` sets a meter provider with an
in-memory reader and a tracer provider, so every cached request adds to ``asapp_auth.cache.hits``.
Rounds are interleaved (each round runs every variant once, in a shuffled order); the median and
the fastest round are reported (the fastest is the steadier figure on a loaded machine), in
microseconds per request: the auth flow alone (no transport), and a whole ``httpx.Client``
request over ``httpx.MockTransport``.

    python bench/bench_otel.py [--quick]

Writes bench/results/otel.json and prints a Markdown table. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("no otel", "API, no provider", "SDK configured")
MEASURES = ("auth flow alone", "httpx request, MockTransport")


def measure(variant: str, per_round: int) -> dict[str, float]:
    """In this process: microseconds per cached request, after a warm-up, for each measure."""
    if variant == "no otel":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    elif variant == "SDK configured":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        trace.set_tracer_provider(TracerProvider())
    else:
        import opentelemetry.metrics  # noqa: F401

    import httpx

    from asapp_auth import AuthContext, AuthPipeline, _telemetry

    url = "https://api.chat.example/v1/account"
    pipeline = AuthPipeline(origins=["https://api.chat.example"])
    context = AuthContext({"Auth": {"Token": "tok-bench"}}, expires_in=3600)
    pipeline.load("alice", lambda needs_refresh: context)
    client = httpx.Client(
        auth=pipeline, transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    client.get(url)  # the one miss: it also finds the configured providers
    assert (_telemetry.ACTIVE is not None) == (variant == "SDK configured"), variant
    request = httpx.Request("GET", url)
    flows = pipeline.sync_auth_flow

    def flow_alone() -> None:
        flow = flows(request)
        next(flow)
        flow.close()

    def whole_request() -> None:
        client.get(url)

    figures = {}
    for name, call in zip(MEASURES, (flow_alone, whole_request), strict=True):
        for _ in range(per_round // 10):
            call()
        started = time.perf_counter()
        for _ in range(per_round):
            call()
        figures[name] = (time.perf_counter() - started) / per_round * 1e6
    client.close()
    return figures


def run_variant(variant: str, per_round: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--per-round", str(per_round)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke test")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--per-round", type=int, default=20_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.per_round)))
        return
    rounds, per_round = (2, 2_000) if args.quick else (11, 20_000)
    samples: dict[str, dict[str, list[float]]] = {v: {m: [] for m in MEASURES} for v in VARIANTS}
    for _ in range(rounds):
        for variant in random.sample(VARIANTS, len(VARIANTS)):
            for name, value in run_variant(variant, per_round).items():
                samples[variant][name].append(value)
    medians = {v: {m: statistics.median(samples[v][m]) for m in MEASURES} for v in VARIANTS}
    fastest = {v: {m: min(samples[v][m]) for m in MEASURES} for v in VARIANTS}
    data = {
        "quick": args.quick,
        "rounds": rounds,
        "per_round": per_round,
        "median_us_per_request": medians,
        "fastest_us_per_request": fastest,
        "samples": samples,
    }
    out = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "otel.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"Cached path with OpenTelemetry, {rounds} rounds of {per_round} requests, µs/request")
    print("(median / fastest round; in brackets, the difference from no otel)\n")
    print("| variant | " + " | ".join(MEASURES) + " |")
    print("| --- | " + " | ".join("---:" for _ in MEASURES) + " |")
    for variant in VARIANTS:
        cells = []
        for m in MEASURES:
            cell = []
            for figures in (medians, fastest):
                value, delta = figures[variant][m], figures[variant][m] - figures["no otel"][m]
                cell.append(f"{value:.2f}" + ("" if variant == "no otel" else f" ({delta:+.2f})"))
            cells.append(" / ".join(cell))
        print(f"| {variant} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
