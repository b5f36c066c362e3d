"""Tokens signed per second: ``cryptography`` alone, asapp-auth-jwt's ``Signer``, and PyJWT.

    python bench/bench_jwt.py [--quick]

(a) "cryptography alone" signs a fixed, pre-encoded header.payload and appends the signature:
the floor any JWS library pays. (b) ``Signer.sign`` encodes typical claims (iss, sub, aud, iat,
nbf, exp, jti) each time. (c) ``jwt.encode`` (PyJWT) encodes the same claims. The three run in
interleaved rounds so that machine noise hits each alike; the table shows medians. Results go to
``bench/results/jwt.json``. Needs asapp-auth-jwt and PyJWT installed (the plugin's ``[test]``
extra).
"""

from __future__ import annotations

import argparse
import base64
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
from asapp_auth_jwt import Signer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# BENCH_RESULTS: another folder for the results (the smoke test's, say).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results") / "jwt.json"
ALGORITHMS = ("ES256", "EdDSA", "RS256")


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def make_key(algorithm: str) -> Any:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "https://company.example",
        "sub": "customer-0123456789",
        "aud": "https://platform.example",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "kW3uM2b8H1dCz6y0pQ4sXg",
    }


def minimal(algorithm: str, key: Any, kid: str) -> Callable[[], bytes]:
    """The least work that yields a valid JWS: sign fixed bytes, append the signature."""
    header = json.dumps({"alg": algorithm, "typ": "JWT", "kid": kid}).encode()
    signing_input = b64(header) + b"." + b64(json.dumps(claims()).encode())
    if algorithm == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())

        def sign_es() -> bytes:
            r, s = decode_dss_signature(key.sign(signing_input, ecdsa))
            return signing_input + b"." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

        return sign_es
    if algorithm == "EdDSA":
        return lambda: signing_input + b"." + b64(key.sign(signing_input))
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    return lambda: signing_input + b"." + b64(key.sign(signing_input, pad, sha))


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
    for algorithm in ALGORITHMS:
        key = make_key(algorithm)
        signer = Signer(key, algorithm=algorithm)
        assert signer.kid is not None
        typical = claims()
        candidates: dict[str, Callable[[], object]] = {
            "cryptography": minimal(algorithm, key, signer.kid),
            "asapp_auth_jwt": partial(signer.sign, typical),
            "pyjwt": partial(
                pyjwt.encode, typical, key, algorithm=algorithm, headers={"kid": signer.kid}
            ),
        }
        # A token from each must verify, or the figures mean nothing.
        for function in candidates.values():
            made = function()
            token = made.decode() if isinstance(made, bytes) else str(made)
            pyjwt.decode(token, key.public_key(), algorithms=[algorithm], audience=typical["aud"])
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
            "ours_over_cryptography": medians["asapp_auth_jwt"] / medians["cryptography"],
            "ours_over_pyjwt": medians["asapp_auth_jwt"] / medians["pyjwt"],
        }
    return {
        "benchmark": "JWT signing, tokens per second (median of interleaved rounds)",
        "quick": quick,
        "rounds": rounds,
        "seconds_per_sample": seconds,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "pyjwt": pyjwt.__version__,
        "machine": platform.machine(),
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| algorithm | cryptography alone | asapp_auth_jwt.Signer | PyJWT | ours / cryptography "
        "| ours / PyJWT |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for algorithm, row in report["results"].items():
        m = row["median_ops_per_second"]
        lines.append(
            f"| {algorithm} | {m['cryptography']:,.0f} | {m['asapp_auth_jwt']:,.0f} | "
            f"{m['pyjwt']:,.0f} | {row['ours_over_cryptography']:.2f}x | "
            f"{row['ours_over_pyjwt']:.2f}x |"
        )
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """The Markdown table, from the JSON this script writes."""
    return table(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args(argv)
    report = run(args.quick)
    print(markdown(report))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")
    for algorithm, row in report["results"].items():
        print(f"{algorithm}: ours / cryptography alone = {row['ours_over_cryptography']:.2f}x")
    low = [a for a, row in report["results"].items() if row["ours_over_cryptography"] < 0.8]
    if low:
        print(f"ours is under 0.8x cryptography alone for {low}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
