"""Sessions: ``nox -s tests lint typecheck docs`` is the CI gate; ``demo`` and ``bench`` run
the rest.

Every session builds its own virtualenv from the repository's files, so what passes here
passes on a fresh machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

ROOT = Path(__file__).parent
PLUGINS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "plugins").glob("asapp-auth-*"))
# Example plugin distributions for plugin authors (not shipped): installed, tested and checked
# like the plugins, so the docs that include their source show code that works.
EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("asapp-auth-*"))
PYTHON = "3.11"
DOCS_TOOLS = [
    "mkdocs==1.6.1",
    "mkdocs-material==9.8.1",
    "mkdocstrings[python]==1.0.8",
    "mkdocstrings-python==2.0.11",
]
LINTED = ["src", "tests", "plugins", "examples", "bench", "noxfile.py", "dev.py"]


def install_all(session: nox.Session, extra: str = "test") -> None:
    """The core, every plugin and every example, editable, with their ``extra`` dependencies."""
    dists = (*PLUGINS, *EXAMPLES)
    session.install("-e", f".[{extra}]", *(arg for p in dists for arg in ("-e", f"{p}[{extra}]")))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The core's test suite, then each plugin's and example's own suite against this core."""
    install_all(session)
    # The bench smoke test runs every benchmark, alternatives included.
    session.install("httpx-auth==0.23.1", "authlib", "PyJWT[crypto]")
    session.run("pytest", *session.posargs)
    for project in (*PLUGINS, *EXAMPLES):
        session.chdir(ROOT / project)
        session.run("pytest", "-q")
    session.chdir(ROOT)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the core, every plugin and example, and this file."""
    install_all(session)
    session.install("mypy==2.4.1", "types-cachetools", "types-requests", "nox")
    session.run("mypy", "--strict", "src", *(f"{p}/src" for p in (*PLUGINS, *EXAMPLES)))
    session.run("mypy", "--strict", "noxfile.py", "dev.py")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site, built with every warning an error (``site/``)."""
    session.install("-e", ".", *(arg for p in PLUGINS for arg in ("-e", p)), *DOCS_TOOLS)
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The quick start's main job: the authentication model, step by step, on a local platform."""
    install_all(session, extra="test")
    session.run("asapp-auth", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the alternatives, side by side in one run (figures, not assertions)."""
    install_all(session)
    # matplotlib draws the report's chart: only this session needs it.
    session.install("httpx-auth", "authlib", "PyJWT[crypto]", "matplotlib==3.11.2")
    quick = ["--quick"] if "--quick" in session.posargs else []
    for script in (
        "bench_cached_path",
        "bench_stampede",
        "bench_customers",
        "bench_jwt",
        "bench_oauth2_e2e",
        "bench_dpop",
        # httpcore's and httpcore2's pools under hundreds of threads (encode/httpcore#1110).
        "bench_pool",
        # The cached path without OpenTelemetry, with the API alone, and with an SDK.
        "bench_otel",
    ):
        session.run("python", f"bench/{script}.py", *quick)
    # redis-server comes from the machine (dev.py test installs Debian's), not from pip.
    if shutil.which("redis-server"):
        session.run("python", "bench/bench_shared_cache.py", *quick)
    else:
        session.warn("redis-server not found: bench_shared_cache skipped")
    # The tables and chart for docs/performance.md, from bench/results/.
    session.run("python", "bench/report.py")
