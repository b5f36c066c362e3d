"""The asapp-auth command line: the demo, the plugin listing, version and errors."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from asapp_auth import __version__, hookimpl
from asapp_auth.cli import main
from asapp_auth.commands import CommandError, Commands

SRC = Path(__file__).resolve().parent.parent / "src" / "asapp_auth"


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
    assert main(["no-such-command"]) == 2
    with pytest.raises(SystemExit) as caught:
        main(["--no-such-flag"])
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


def _pem_key(path: Path, passphrase: bytes | None = None) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    encryption: Any = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return path


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_jwks_help_works_and_names_asapp_auth(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """asapp-auth jwks -h and --help print the command's help, whose usage says asapp-auth jwks."""
    pytest.importorskip("asapp_auth_jwt")
    with pytest.raises(SystemExit) as caught:
        main(["jwks", flag])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: asapp-auth jwks ")
    assert "--passphrase-env VAR" in out
    assert "python -m" not in out


def test_jwks_errors_speak_of_flags_and_start_like_the_other_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing key file, an encrypted key without a passphrase and an unset passphrase
    variable each give one line starting asapp-auth:, naming KEY and --passphrase-env, never the
    plugin's settings; exit 2."""
    pytest.importorskip("asapp_auth_jwt")
    monkeypatch.delenv("NO_SUCH_PASSPHRASE_VAR", raising=False)
    locked = _pem_key(tmp_path / "locked.pem", b"s3cr3t-passphrase")
    cases = [
        ([str(tmp_path / "missing.pem")], "asapp-auth: jwks: KEY '"),
        ([str(locked)], "asapp-auth: jwks: the PEM key in file '"),
        ([str(locked), "--passphrase-env", "NO_SUCH_PASSPHRASE_VAR"], "asapp-auth: jwks: "),
    ]
    for argv, start in cases:
        assert main(["jwks", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(start), err
        assert len(err.splitlines()) == 1
        for settings_word in ("setting", "passphrase_env", "keys[0]", "error:"):
            assert settings_word not in err, err
    assert main(["jwks", str(locked)]) == 2
    assert "give its passphrase (--passphrase-env names" in capsys.readouterr().err
    assert main(["jwks", str(locked), "--passphrase-env", "NO_SUCH_PASSPHRASE_VAR"]) == 2
    assert "--passphrase-env names environment variable 'NO_SUCH_PASSPHRASE_VAR'" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("THE_PASSPHRASE", "s3cr3t-passphrase")
    assert main(["jwks", str(locked), "--passphrase-env", "THE_PASSPHRASE"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"][0]["kty"] == "EC"


def test_the_core_imports_no_plugin_module() -> None:
    """No module of the core names a plugin's package: plugin commands come through the hook."""
    for module in SRC.rglob("*.py"):
        found = re.findall(r"asapp_auth_\w+", module.read_text(encoding="utf-8"))
        assert found == [], f"{module.name} names {found}"


def _hello(args: argparse.Namespace) -> int:
    if args.name == "nobody":
        raise CommandError("hello: --name nobody is nobody; give a name")
    print(f"hello {args.name}")
    return 0


@hookimpl
def register_commands(commands: Commands) -> None:
    hello = commands.add("hello", help="say hello", run=_hello)
    hello.add_argument("--name", required=True)
    commands.add("check", help="a command name that is taken", run=_hello)


@pytest.fixture
def hello_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed plugin ``hello`` whose module adds ``asapp-auth hello`` (and tries
    ``check``)."""
    module = types.ModuleType("fake_hello_plugin")
    module.register_commands = register_commands  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_hello_plugin", module)
    fake = metadata.EntryPoint("hello", "fake_hello_plugin", "asapp_auth")
    real = metadata.entry_points

    def entry_points(**select: Any) -> Any:
        found = real(**select)
        return [*found, fake] if select.get("group") == "asapp_auth" else found

    monkeypatch.setattr("asapp_auth.plugins.metadata.entry_points", entry_points)
    monkeypatch.delenv("ASAPP_AUTH_PLUGINS", raising=False)


def test_a_plugin_adds_a_command_through_the_hook(
    hello_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """register_commands adds a subcommand with its own help, run and one-line errors; a name
    already taken is refused with a warning naming the plugin, and the built-in one stays."""
    assert main(["hello", "--name", "ada"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "hello ada\n"
    assert "plugin 'hello': its commands are left out" in captured.err
    assert "command 'check' is taken by asapp-auth itself" in captured.err
    assert main(["hello", "--name", "nobody"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "asapp-auth: hello: --name nobody is nobody; give a name"
    )
    with pytest.raises(SystemExit):
        main(["hello", "-h"])
    assert capsys.readouterr().out.startswith("usage: asapp-auth hello ")
    assert main(["check", "--config", "/no/such/asapp-auth.toml"]) == 2


def test_a_plugin_command_without_its_plugin_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """asapp-auth jwks with the JWT plugin left out by ASAPP_AUTH_PLUGINS says so and exits 2;
    a mistyped command gets the closest one."""
    pytest.importorskip("asapp_auth_jwt")
    monkeypatch.setenv("ASAPP_AUTH_PLUGINS", "static")
    assert main(["jwks", "key.pem"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asapp-auth: the jwks command comes with the jwt plugin: plugin 'jwt'")
    assert "not allowed" in err
    assert main(["chek"]) == 2
    assert "unknown command 'chek' (did you mean 'check'?)" in capsys.readouterr().err


def test_install_hints_for_extras_name_packages_an_index_has() -> None:
    """The hint for a missing extra installs the extra's own packages, as pyproject.toml
    declares them, not asapp-auth[extra] (asapp-auth is on no package index)."""
    import tomllib

    from asapp_auth._hints import extra_hint

    declared = tomllib.loads((SRC.parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in ("redis", "requests", "aiohttp", "httpx2"):
        hint = extra_hint(extra)
        assert hint == "pip install " + " ".join(f"'{spec}'" for spec in sorted(declared[extra]))
        assert "asapp-auth[" not in hint
