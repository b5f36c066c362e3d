"""``asapp-auth demo --provider``: the model walked with each provider, through the CLI entry."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

from asapp_auth import demo, plugins
from asapp_auth.cli import main

# Lines each provider's run must print, beside "all N steps behaved".
EXPECTED = {
    "app": [
        "contexts from the app's own context_provider",
        "20 concurrent requests on an expired token: 1 refresh, all HTTP 200",
        "set_customer('bob') -> the next request is bob's",
    ],
    "static": [
        "contexts from plugin 'static' (asapp-auth-static",
        "Bearer <redacted>; AuthContext({'Auth': {'Token': '<redacted>'}}) from static",
        "the same token, refused again -> TokenRejectedError (no loop)",
        "20 concurrent requests: 1 refresh read the new token, all HTTP 200",
        "static serves only ['alice']: NoProviderError, nothing sent",
    ],
    "jwt": [
        "contexts from plugin 'jwt' (asapp-auth-jwt",
        "20 concurrent requests on a JWT past its exp (the clock moved on): 1 new JWT minted",
        "set_customer('bob') -> the next request is bob's",
    ],
    "oauth2": [
        "contexts from plugin 'oauth2' (asapp-auth-oauth2",
        "401 -> device login (code shown at http://127.0.0.1:",
        "entered) -> ID token checked -> set_customer('alice') -> HTTP 200 as alice, on the "
        "login's own token",
        "20 concurrent requests on an expired token: 1 refresh-token grant, all HTTP 200",
        "clear(); bob logs in with a device code -> set_customer('bob') -> the next request is "
        "bob's",
    ],
}
STEPS = {"app": 8, "static": 9, "jwt": 8, "oauth2": 8}


@pytest.mark.parametrize("provider", demo.PROVIDERS)
def test_demo_behaves_with_each_provider(provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every step of the demo behaves with each provider, and no token or key is printed."""
    if provider != "app":
        pytest.importorskip(f"asapp_auth_{provider}")
    assert main(["demo", "--provider", provider, "--concurrency", "20"]) == 0
    out = capsys.readouterr().out
    assert f"all {STEPS[provider]} steps behaved" in out
    for line in EXPECTED[provider]:
        assert line in out
    assert "FAIL" not in out
    for secret_like in ("tok-", "eyJ", "site-", "BEGIN"):  # tokens, JWTs, sessions, keys
        assert secret_like not in out


def test_demo_prints_the_metrics_its_steps_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    """--telemetry ends the demo with a table of what it recorded: hits, misses, refreshes."""
    assert main(["demo", "--telemetry", "--concurrency", "20"]) == 0
    out = capsys.readouterr().out
    assert "all 8 steps behaved" in out
    table = out.split("recorded (OpenTelemetry, ", 1)[1]
    for line in ("cache.hits ", "cache.misses ", "refreshes ", "reason=rejected", "logins "):
        assert line in table
    assert "alice" not in table
    assert "bob" not in table


@pytest.mark.parametrize("client", ["httpx-async", "httpx2", "httpx2-async", "requests", "aiohttp"])
def test_demo_behaves_over_every_client(client: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--client runs every step through that client's adapter, and says which it used."""
    assert main(["demo", "--client", client, "--concurrency", "20"]) == 0
    out = capsys.readouterr().out
    assert f"client {client}\n" in out
    assert "all 8 steps behaved" in out
    for line in EXPECTED["app"]:
        assert line in out


def test_a_client_that_is_not_installed_exits_2_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--client requests without requests installed says how to install it, with a command that
    works today: the extra's packages by name (asapp-auth itself is on no index)."""
    monkeypatch.setitem(sys.modules, "requests", None)
    assert main(["demo", "--client", "requests"]) == 2
    assert "needs requests: pip install 'requests>=2.32'" in capsys.readouterr().err


def test_default_provider_is_the_apps_own(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --provider the demo uses the app's own context_provider, as it always has."""
    assert main(["demo", "--concurrency", "5"]) == 0
    assert "contexts from the app's own context_provider" in capsys.readouterr().out


def test_missing_plugin_exits_2_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A provider whose plugin is not installed exits 2 with one line naming the package."""
    installed = metadata.entry_points

    def without_jwt(**select: str) -> metadata.EntryPoints:
        found = installed(**select)
        return metadata.EntryPoints(ep for ep in found if ep.name != "jwt")

    monkeypatch.setattr(plugins.metadata, "entry_points", without_jwt)
    assert main(["demo", "--provider", "jwt"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("asapp-auth: demo --provider jwt: no installed plugin is named 'jwt'")
    # The command works today: it names the plugin's folder in this checkout, not an index.
    command = line.split("; ")[-1]
    assert command.startswith("pip install ")
    assert (Path(command.removeprefix("pip install ")) / "pyproject.toml").is_file()


def test_plugin_not_allowed_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plugin left out of ASAPP_AUTH_PLUGINS exits 2 saying so, not asking to install it."""
    monkeypatch.setenv(plugins.ALLOW_ENV, "static")
    assert main(["demo", "--provider", "oauth2"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "plugin 'oauth2' is installed but not allowed" in line
    assert "ASAPP_AUTH_PLUGINS='static' does not list it" in line


def test_unknown_provider_is_a_usage_error() -> None:
    """--provider accepts only the known names: anything else is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["demo", "--provider", "nope"])
    assert caught.value.code == 2


def test_a_step_that_misbehaves_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """When a step's check fails, the demo reports it and exits 1."""
    monkeypatch.setattr(demo._App, "expire", lambda self: "a token that never expired")
    assert main(["demo", "--concurrency", "5"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  AssertionError: 0 refreshes" in out
    assert "1 of 8 steps did not behave" in out


def test_jwt_platform_refuses_forged_and_expired_tokens(tmp_path: Path) -> None:
    """The jwt demo's platform accepts only JWTs signed by a published key, before their exp."""
    pytest.importorskip("asapp_auth_jwt")
    from asapp_auth_jwt import JWTProvider, from_settings

    with demo._Platform() as platform:
        backend = demo._Jwt(platform, tmp_path)
        provider = from_settings(backend.settings())
        assert isinstance(provider, JWTProvider)
        backend.publish(provider.jwks())
        token, _ = provider.mint("alice")
        assert backend.verify(token) == "alice"
        head, body, signature = token.split(".")
        assert backend.verify(f"{head}.{body}.{signature[::-1]}") is None  # forged signature
        (tmp_path / "other").mkdir()
        other = demo._Jwt(platform, tmp_path / "other")
        forged, _ = from_settings(other.settings()).mint("alice")  # the same kid, another key
        assert backend.verify(forged) is None
        backend.skew = 301.0  # the platform's clock passes the token's exp
        assert backend.verify(token) is None


def test_oauth2_demo_provider_refuses_wrong_clients_and_spent_refresh_tokens() -> None:
    """The oauth2 demo's OpenID provider answers only its client, once per refresh token."""
    import base64

    import httpx

    from asapp_auth._demo_oauth2 import DEVICE_GRANT, DemoAuthorizationServer

    with demo._Platform() as platform:
        idp = DemoAuthorizationServer(platform, client_id="app", secret="right", lifetime=300)
        try:
            token_url = f"{idp.url}/oauth/token"

            def post(url: str, secret: str, **form: str) -> httpx.Response:
                basic = base64.b64encode(f"app:{secret}".encode()).decode()
                return httpx.post(url, data=form, headers={"Authorization": f"Basic {basic}"})

            assert post(f"{idp.url}/oauth/device", "wrong").json() == {"error": "invalid_client"}
            code = post(f"{idp.url}/oauth/device", "right").json()
            pending = post(
                token_url, "right", grant_type=DEVICE_GRANT, device_code=code["device_code"]
            )
            assert pending.json() == {"error": "authorization_pending"}
            idp.enter(code["user_code"], "alice")
            tokens = post(
                token_url, "right", grant_type=DEVICE_GRANT, device_code=code["device_code"]
            )
            assert platform.customer_of(tokens.json()["access_token"]) == "alice"
            refresh = tokens.json()["refresh_token"]
            assert post(
                token_url, "right", grant_type="refresh_token", refresh_token=refresh
            ).is_success
            spent = post(token_url, "right", grant_type="refresh_token", refresh_token=refresh)
            assert spent.json() == {"error": "invalid_grant"}
            assert idp.refresh_grants == 1
        finally:
            idp.close()
