#!/usr/bin/env python3
"""The project's two commands, for a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo     # the authentication model, step by step, against a local platform
    python3 dev.py test     # the whole test suite, lint, type checks and docs build (CI)

It makes ``.venv-dev`` holding nox (with uv), then hands over to the sessions in noxfile.py.
Anything after the command goes to nox, e.g. ``python3 dev.py nox -s bench``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".venv-dev"
BIN = TOOLS / ("Scripts" if os.name == "nt" else "bin")
COMMANDS = {"demo": ["-s", "demo"], "test": ["-s", "tests", "lint", "typecheck", "docs"], "nox": []}


def ensure_tools() -> Path:
    nox = BIN / "nox"
    if not nox.exists():
        print("dev.py: installing nox into .venv-dev (once)", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        python = str(BIN / "python")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "nox[uv]==2026.10.20"], check=True)
    return nox


def ensure_redis() -> None:
    """The shared-cache tests start a real redis-server: install Debian's when we can.

    Without one they are skipped, or fail when ``CI`` is set (the ``redis_server`` fixture).
    """
    if shutil.which("redis-server"):
        return
    can_install = shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0
    if can_install:
        print(
            "dev.py: installing redis-server (Debian package) for the shared-cache tests",
            flush=True,
        )
        quiet = {
            "stdout": subprocess.DEVNULL,
            "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        }
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)  # type: ignore[call-overload]
            subprocess.run(  # type: ignore[call-overload]
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
                check=True,
                **quiet,
            )
        except subprocess.CalledProcessError as exc:
            print(f"dev.py: apt-get failed (exit {exc.returncode}); no redis-server", flush=True)
        else:
            return
    else:
        why = "not root" if shutil.which("apt-get") else "no apt-get"
        print(f"dev.py: no redis-server here, and dev.py cannot install it ({why})", flush=True)
    if os.environ.get("CI"):
        print(
            "dev.py: CI is set, so the shared-cache tests will FAIL; install redis-server",
            flush=True,
        )
    else:
        print(
            "dev.py: the shared-cache tests will be skipped; install redis-server to run them",
            flush=True,
        )


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before anything is checked
        print("dev.py: Python 3.11 or newer is needed", file=sys.stderr)
        return 2
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    nox = ensure_tools()
    if argv[0] == "test":
        ensure_redis()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    args = [str(nox), "--noxfile", str(ROOT / "noxfile.py"), *COMMANDS[argv[0]], *argv[1:]]
    return subprocess.run(args, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
