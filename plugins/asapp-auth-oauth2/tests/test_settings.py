"""Settings: validated at configuration time, secrets resolved once and never shown."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import asapp_auth_oauth2
import pytest
from asapp_auth_oauth2 import OAuth2Provider, Secret, from_settings
from conftest import SECRETS

from asapp_auth.errors import ConfigurationError

BASE = {"token_endpoint": "https://as.example/token", "client_id": "app"}


def build(**settings: Any) -> OAuth2Provider:
    return OAuth2Provider(**{**BASE, **settings})


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"grant": "password"}, "grant"),
        ({"client_id": ""}, "client_id"),
        ({"token_endpoint": "ftp://as.example/token"}, "token_endpoint"),
        ({"token_endpoint": "http://as.example/token"}, "token_endpoint"),
        ({"token_endpoint": "https://u:p@as.example/token"}, "token_endpoint"),
        ({"client_auth": "client_secret_jwt"}, "client_auth"),
        ({"client_auth": "client_secret_basic"}, "client_secret"),
        ({"client_auth": "none", "client_secret": "x"}, "client_secret"),
        ({"client_auth": "private_key_jwt"}, "signer"),
        ({"grant": "jwt_bearer"}, "signer"),
        ({"client_auth": "tls_client_auth"}, "cert"),
        ({"grant": "token_exchange"}, "subject_token_for"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"backoff_base": 10, "backoff_max": 1}, "backoff_base"),
        ({"scope": 5}, "scope"),
        ({"resource": "not-absolute"}, "resource"),
        ({"verify": 3}, "verify"),
        ({"cert": ["a"]}, "cert"),
        ({"cert": "/nonexistent/client.pem"}, "cert"),
        ({"verify": "/nonexistent/ca.pem"}, "verify"),
        ({"signing_key": "/nonexistent/key.pem"}, "signing_key"),
        ({"signing_key": 5}, "signing_key"),
        ({"refresh_token_for": "no_such_module_xyz:f"}, "refresh_token_for"),
        ({"refresh_token_for": 5}, "refresh_token_for"),
        ({"signer": object()}, "signer"),
        ({"client_secret": "env:ASAPP_OAUTH2_SURELY_UNSET"}, "client_secret"),
        ({"client_secret": "file:/nonexistent/secret"}, "client_secret"),
        ({"max_expires_in": 10}, "default_expires_in"),
        ({"revoke_on_clear": "yes"}, "revoke_on_clear"),
        ({"tokn_endpoint": "x"}, "tokn_endpoint"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict[str, Any], named: str) -> None:
    """Each bad setting raises ConfigurationError naming it and the plugin."""
    with pytest.raises(ConfigurationError) as caught:
        build(**settings)
    assert named in str(caught.value)
    assert "oauth2" in str(caught.value)


def test_endpoint_or_issuer_is_required() -> None:
    """Without token_endpoint or issuer, configuration fails and says what to give."""
    with pytest.raises(ConfigurationError, match="issuer"):
        OAuth2Provider(client_id="app")


def test_http_is_allowed_on_loopback_and_by_opt_in() -> None:
    """Plain http is accepted for loopback hosts, and elsewhere only with allow_http."""
    build(token_endpoint="http://127.0.0.1:8080/token").close()
    build(token_endpoint="http://localhost/token").close()
    build(token_endpoint="http://as.internal/token", allow_http=True).close()


def test_secret_references_are_resolved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """env: and file: references are read at configuration time; literal: escapes them."""
    SECRETS.update({"from-env-secret", "from-file-secret"})
    monkeypatch.setenv("OAUTH2_TEST_SECRET", "from-env-secret")
    path = tmp_path / "secret"
    path.write_text("from-file-secret\n")
    assert build(client_secret="env:OAUTH2_TEST_SECRET").settings.client_secret == Secret(
        "from-env-secret"
    )
    assert build(client_secret=f"file:{path}").settings.client_secret == Secret("from-file-secret")
    assert build(client_secret="literal:env:X").settings.client_secret == Secret("env:X")


def test_repr_never_shows_the_secret() -> None:
    """Neither the plugin's nor its settings' repr shows the client secret."""
    SECRETS.add("a-very-secret-value")
    plugin = build(client_secret="a-very-secret-value")
    assert "a-very-secret-value" not in repr(plugin) + repr(plugin.settings) + str(plugin.settings)
    assert plugin.settings.client_auth == "client_secret_basic"


def test_settings_are_normalised() -> None:
    """Scope lists join with spaces; audience strings become tuples; grant URNs are accepted."""
    plugin = build(
        scope=["read", "write", "read"],
        audience="aud",
        grant="urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token_for="os.path:basename",
    )
    assert plugin.settings.scope == "read write"
    assert plugin.settings.audience == ("aud",)
    assert plugin.settings.grant == "token_exchange"


def test_from_settings_is_the_entry_point_factory() -> None:
    """The module's from_settings builds the plugin from a settings dict."""
    plugin = from_settings(dict(BASE))
    assert isinstance(plugin, OAuth2Provider)
    assert hasattr(plugin.provide_context, "asapp_auth_impl")


def test_entry_point_is_declared() -> None:
    """pyproject declares the oauth2 entry point of the asapp_auth group, at this module."""
    data = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert data["project"]["entry-points"]["asapp_auth"] == {"oauth2": "asapp_auth_oauth2"}
    assert callable(asapp_auth_oauth2.from_settings)


def test_all_is_complete() -> None:
    """__all__ names every public name of the package, once, and nothing it lacks."""
    names = asapp_auth_oauth2.__all__
    assert len(set(names)) == len(names)
    public = {n for n in dir(asapp_auth_oauth2) if not n.startswith("_") and n != "errors"}
    assert public - {"annotations"} <= set(names)
    for name in names:
        assert hasattr(asapp_auth_oauth2, name)


def test_every_problem_is_reported_at_once_in_the_order_given() -> None:
    """Several bad settings are all reported by one error, in the order they were given, each
    with its own key; an unknown one gets the closest known name."""
    settings = {**BASE, "timeout": "ten", "scopes": "read", "max_retries": -1, "client_id": ""}
    with pytest.raises(ConfigurationError) as caught:
        from_settings(settings)
    problems = caught.value.problems
    assert [problem.split(" ")[:3] for problem in problems] == [
        ["setting", "'client_id'", "must"],
        ["setting", "'timeout'", "must"],
        ["unknown", "setting", "'scopes'"],
        ["setting", "'max_retries'", "must"],
    ]
    assert "(did you mean 'scope'?)" in problems[2]
    assert str(caught.value).startswith("plugin 'oauth2': 4 problems:\n  - setting 'client_id'")


def test_a_missing_client_id_says_it_is_missing() -> None:
    """A setting that is required and absent is said to be missing, not of type NoneType."""
    with pytest.raises(ConfigurationError) as caught:
        from_settings({"token_endpoint": BASE["token_endpoint"]})
    assert str(caught.value) == "plugin 'oauth2': setting 'client_id' is missing; it is required"


def _documented_settings(page: Path) -> set[str]:
    """The setting names in the first column of the page's Settings table."""
    import re

    section = page.read_text(encoding="utf-8").split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("|")]
    return {name for row in rows for name in re.findall(r"`(\w+)`", row[1])}


def test_settings_tables_list_every_setting() -> None:
    """The docs page's Settings table lists every setting the plugin takes, and none it does not;
    the README's lists no setting that does not exist, and every one unless it sends the reader
    to the docs page for the rest."""
    from asapp_auth_oauth2._settings import _KNOWN

    here = Path(__file__).resolve().parent.parent
    docs = here.parent.parent / "docs" / "plugins" / "oauth2.md"
    if docs.is_file():  # in the repository
        documented = _documented_settings(docs)
        assert sorted(_KNOWN - documented) == [], "docs/plugins/oauth2.md does not list these"
        assert sorted(documented - _KNOWN) == [], "docs/plugins/oauth2.md lists unknown settings"
    readme = here / "README.md"
    listed = _documented_settings(readme)
    assert sorted(listed - _KNOWN) == [], "README.md lists settings that do not exist"
    table = readme.read_text(encoding="utf-8").split("\n## Settings\n", 1)[1].split("\n## ")[0]
    if "docs/plugins/oauth2.md" not in table:
        assert sorted(_KNOWN - listed) == [], "README.md does not list these"
    assert "ssl_context" in listed


def test_signing_key_without_the_jwt_plugin_gives_an_install_command_that_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the JWT plugin, signing_key says to install it from the checkout's folder (it is
    on no index), not the [jwt] extra that pip could not resolve."""
    monkeypatch.setitem(sys.modules, "asapp_auth_jwt", None)
    with pytest.raises(ConfigurationError) as caught:
        build(signing_key="client.pem")
    message = str(caught.value)
    assert "pip install ./plugins/asapp-auth-jwt" in message
    assert "[jwt]" not in message
