"""DPoP proofs per second: ``cryptography`` signing alone, the oauth2 plugin's proofs, and its
``request_proof`` hook, per key type.

    python bench/bench_dpop.py [--quick]

(a) "signing alone" signs a fixed, pre-encoded header.payload of a resource proof (the same
claims) and appends the signature: the floor of any DPoP client. (b) ``DPoPKey.proof`` makes a
whole resource proof (new ``jti`` and ``iat``, ``ath`` of a 43-character token, the JSON and
base64url of the payload, the signature). (c) the plugin's ``request_proof`` hook, as the
pipeline calls it per request (it finds the token in the context first). Interleaved rounds;
medians. Results go to ``bench/results/dpop.json``. Needs asapp-auth-oauth2 and PyJWT (every
proof is verified before it is timed).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cryptography
import jwt as pyjwt
from asapp_auth_oauth2._dpop import DPoP, DPoPHooks, DPoPKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from asapp_auth import AuthContext

RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results") / "dpop.json"
ALGORITHMS = ("ES256", "EdDSA")
TOKEN = "at-" + "x" * 40
URL = "https://api.example/v1/conversations"


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signing_alone(key: DPoPKey, private_key: Any) -> Callable[[], bytes]:
    """The least work that yields the same proof: sign fixed bytes, append the signature."""
    header = {"typ": "dpop+jwt", "alg": key.algorithm, "jwk": key.jwk}
    claims = {
        "jti": "kW3uM2b8H1dCz6y0pQ4sXg",
        "htm": "GET",
        "htu": URL,
        "iat": int(time.time()),
        "ath": b64(hashlib.sha256(TOKEN.encode()).digest()).decode(),
    }
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    if key.algorithm == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())

        def sign_es() -> bytes:
            r, s = decode_dss_signature(private_key.sign(signing_input, ecdsa))
            return signing_input + b"." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

        return sign_es
    return lambda: signing_input + b"." + b64(private_key.sign(signing_input))


def ops_per_second(function: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``function`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            function()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def run(quick: bool) -> dict[str, Any]:
    rounds, seconds = (3, 0.2) if quick else (15, 0.3)
    results: dict[str, Any] = {}
    context = AuthContext({"Auth": {"Headers": {"Authorization": f"DPoP {TOKEN}"}}})
    for algorithm in ALGORITHMS:
        private_key: Any = (
            ec.generate_private_key(ec.SECP256R1())
            if algorithm == "ES256"
            else ed25519.Ed25519PrivateKey.generate()
        )
        key = DPoPKey(private_key)
        hooks = DPoPHooks(DPoP(key))
        candidates: dict[str, Callable[[], object]] = {
            "signing_alone": signing_alone(key, private_key),
            "proof": partial(key.proof, "GET", URL, access_token=TOKEN),
            "request_proof": partial(hooks.request_proof, context, "GET", URL),
        }
        # Each must be a proof that verifies with the key, or the figures mean nothing.
        for function in candidates.values():
            made = function()
            proof = made["DPoP"] if isinstance(made, dict) else made
            proof = proof.decode() if isinstance(proof, bytes) else str(proof)
            pyjwt.decode(proof, private_key.public_key(), algorithms=[algorithm])
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        for function in candidates.values():  # warm-up
            ops_per_second(function, seconds / 4)
        for _ in range(rounds):
            for name, function in candidates.items():
                samples[name].append(ops_per_second(function, seconds))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        results[algorithm] = {
            "median_ops_per_second": medians,
            "samples": samples,
            "proof_over_signing": medians["proof"] / medians["signing_alone"],
            "hook_over_signing": medians["request_proof"] / medians["signing_alone"],
        }
    return {
        "benchmark": "DPoP proofs per second (median of interleaved rounds)",
        "quick": quick,
        "rounds": rounds,
        "seconds_per_sample": seconds,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "machine": platform.machine(),
        "results": results,
    }


def markdown(data: dict[str, Any]) -> str:
    """The Markdown table, from the JSON this script writes."""
    lines = [
        "| key | signing alone | DPoPKey.proof | request_proof hook | proof / signing "
        "| hook / signing |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for algorithm, row in data["results"].items():
        m = row["median_ops_per_second"]
        lines.append(
            f"| {algorithm} | {m['signing_alone']:,.0f} | {m['proof']:,.0f} | "
            f"{m['request_proof']:,.0f} | {row['proof_over_signing']:.2f}x | "
            f"{row['hook_over_signing']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args(argv)
    report = run(args.quick)
    print(markdown(report))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
