"""Imported first by benchmarks whose anchors run on httpx: keeps httpx2 out of the process.

authlib's httpx integration binds to httpx2 whenever httpx2 is importable (and the test
environment installs it, for asapp-auth's own httpx2 adapter). An anchor must be measured on the
client it claims, so these benchmarks make ``import httpx2`` fail before authlib is imported.
"""

import sys

sys.modules["httpx2"] = None  # type: ignore[assignment]
