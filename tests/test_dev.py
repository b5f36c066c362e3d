"""dev.py, the fresh clone's entry point: what it does about redis-server, as the README says."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dev(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """dev.py as a module, on a machine without redis-server whose apt-get runs nothing."""
    spec = importlib.util.spec_from_file_location("dev_under_test", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    installed = {"apt-get": "/usr/bin/apt-get"}
    monkeypatch.setattr(module.shutil, "which", installed.get)
    monkeypatch.delenv("CI", raising=False)
    return module


def _as_user(monkeypatch: pytest.MonkeyPatch, dev: ModuleType, uid: int) -> list[list[str]]:
    """Run dev.py's commands as ``uid``; the commands it would run are recorded, not run."""
    ran: list[list[str]] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(args)
        raise subprocess.CalledProcessError(100, args)

    monkeypatch.setattr(dev.os, "geteuid", lambda: uid)
    monkeypatch.setattr(dev.subprocess, "run", run)
    return ran


def test_non_root_without_redis_is_told_the_shared_cache_tests_are_skipped(
    dev: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user who is not root gets no apt-get call, and is told why and that tests are skipped."""
    ran = _as_user(monkeypatch, dev, 1000)
    dev.ensure_redis()
    out = capsys.readouterr().out
    assert ran == []
    assert "cannot install it (not root)" in out
    assert "the shared-cache tests will be skipped" in out


def test_under_ci_the_message_says_the_shared_cache_tests_fail(
    dev: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With CI set, the redis_server fixture fails its tests, and dev.py says so, not "skipped"."""
    _as_user(monkeypatch, dev, 1000)
    monkeypatch.setenv("CI", "true")
    dev.ensure_redis()
    out = capsys.readouterr().out
    assert "CI is set, so the shared-cache tests will FAIL" in out
    assert "skipped" not in out


def test_root_installs_with_apt_get_and_carries_on_when_it_fails(
    dev: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As root dev.py runs apt-get; a failing apt-get is reported, and the run goes on."""
    ran = _as_user(monkeypatch, dev, 0)
    dev.ensure_redis()
    out = capsys.readouterr().out
    assert ran == [["apt-get", "update", "-qq"]]
    assert "apt-get failed (exit 100)" in out
    assert "the shared-cache tests will be skipped" in out


def test_readme_says_what_dev_py_does_without_redis() -> None:
    """The README's quick start says that dev.py installs redis-server with apt-get as root, and
    what a user who is not root gets: skipped tests, or failed ones when ``CI`` is set."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    paragraph = next((p for p in quick_start.split("\n\n") if "redis-server" in p), "")
    text = " ".join(paragraph.split())
    for said in ("with `apt-get`", "as root", "not root", "skipped", "`CI` is set", "they fail"):
        assert said in text, f"README.md's quick start does not say {said!r} about redis-server"
