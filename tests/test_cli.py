"""The asapp-auth command line: the demo, the plugin listing, version and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asapp_auth import __version__
from asapp_auth.cli import main


def test_demo_walks_every_step_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo runs each step of the model against a real local platform and succeeds."""
    assert main(["demo", "--concurrency", "20"]) == 0
    out = capsys.readouterr().out
    assert "all 8 steps behaved" in out
    assert "1 refresh" in out
    assert "tok-" not in out  # no token is ever printed


def test_plugins_lists_installed_plugins_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    """plugins --json lists each installed plugin with its distribution and hooks."""
    code = main(["plugins", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == (1 if any(r["error"] or r["problems"] for r in rows) else 0)
    for row in rows:
        assert set(row) == {
            "name", "distribution", "version", "entry_point", "hooks", "error", "problems",
        }  # fmt: skip


def test_version_and_usage_errors() -> None:
    """--version prints the version; an unknown command exits 2 with usage on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "asapp_auth.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert __version__ in done.stdout
    with pytest.raises(SystemExit) as caught:
        main(["no-such-command"])
    assert caught.value.code == 2


def test_jwks_prints_the_public_keys_only(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """jwks prints the public JWKS of a private key file, with no private member."""
    pytest.importorskip("asapp_auth_jwt")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "key.pem"  # type: ignore[operator]
    path.write_bytes(pem)
    assert main(["jwks", str(path), "--algorithm", "ES256", "--kid", "k1"]) == 0
    document = json.loads(capsys.readouterr().out)
    (jwk,) = document["keys"]
    assert jwk["kid"] == "k1"
    assert jwk["kty"] == "EC"
    assert "d" not in jwk


def test_keygen_refuses_to_overwrite_a_file_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """keygen --out onto an existing file exits 2 with one line saying so, and keeps the file."""
    pytest.importorskip("cryptography")
    path = tmp_path / "cache.key"
    path.write_text("the key in use\n")
    assert main(["keygen", "--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"asapp-auth: keygen --out {path}: the file exists")
    assert "FileExistsError" not in err
    assert len(err.splitlines()) == 1
    assert path.read_text() == "the key in use\n"
    assert main(["keygen", "--out", str(tmp_path / "no-such-folder" / "k")]) == 2
    assert "cannot create it (No such file or directory)" in capsys.readouterr().err
