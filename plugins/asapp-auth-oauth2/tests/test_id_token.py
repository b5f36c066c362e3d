"""ID token validation at login (OpenID Connect Core 3.1.3.7), against ID tokens the real
authorization server signs (authlib, joserfc) and ones it is made to get wrong."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from asapp_auth_oauth2 import IDTokenError
from joserfc.jwk import ECKey, RSAKey
from loginserver import LoginServer, decode, other_key
from test_login import assert_no_secret, me, pipeline_for, plugin_for

from asapp_auth.errors import LoginRequiredError


def now() -> int:
    return int(time.time())


def sign_with(key: Any, alg: str) -> Callable[[LoginServer], None]:
    def tweak(server: LoginServer) -> None:
        server.signing_key, server.id_token_alg = key, alg

    return tweak


def claims(**values: Callable[[], Any] | Any) -> Callable[[LoginServer], None]:
    def tweak(server: LoginServer) -> None:
        server.id_token_claims = {k: v() if callable(v) else v for k, v in values.items()}

    return tweak


def unsigned(server: LoginServer) -> None:
    server.id_token_alg = "none"


def no_openid_granted(server: LoginServer) -> None:
    server.clients["app"].scope = "read write"  # the server grants no openid, so no ID token


REFUSALS = {
    "another issuer": ("iss", claims(iss="https://another-issuer.example")),
    "another audience": ("aud", claims(aud=["another-app"])),
    "an untrusted extra audience": ("aud", claims(aud=["app", "another-app"])),
    "another authorized party": ("azp", claims(azp="another-app")),
    "expired": ("exp", claims(exp=lambda: now() - 3600)),
    "no exp": ("exp", claims(exp=None)),
    "issued in the future": ("iat", claims(iat=lambda: now() + 3600)),
    "issued long ago": ("iat", claims(iat=lambda: now() - 7200)),
    "not valid yet": ("nbf", claims(nbf=lambda: now() + 3600)),
    "another nonce": ("nonce", claims(nonce="a-nonce-from-another-login")),
    "an at_hash of another token": ("at_hash", claims(at_hash="AAAAAAAAAAAAAAAAAAAAAA")),
    "no sub": ("sub", claims(sub="")),
    "alg none": ("alg", unsigned),
    "a forged key with the published kid": ("signature", sign_with(other_key(), "RS256")),
    "no ID token in the response": ("id_token", no_openid_granted),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_an_unacceptable_id_token_refuses_the_login(
    make: Any, login_server: LoginServer, case: str
) -> None:
    """Each unacceptable ID token fails the login with an IDTokenError naming the check and the
    token endpoint, holding no secret; no customer is set and no token kept."""
    check, tweak = REFUSALS[case]
    tweak(login_server)
    plugin = plugin_for(make, login_server)
    pipeline = pipeline_for(plugin, login_server)
    with pytest.raises(IDTokenError) as caught:
        me(pipeline, login_server)
    error = caught.value
    assert error.check == check
    assert error.endpoint == login_server.token_url
    assert login_server.token_url in str(error)
    assert isinstance(error, LoginRequiredError)
    assert pipeline.customer is None
    assert plugin.granted_scope("alice") is None
    assert_no_secret(error, login_server)
    if login_server.id_tokens:
        assert not any(t in str(error) or t in repr(error) for t in login_server.id_tokens)


def test_an_alg_the_settings_do_not_allow_is_refused(make: Any, login_server: LoginServer) -> None:
    """A token signed with a real key of the issuer, by an algorithm outside
    id_token_algorithms, is refused before its signature is looked at."""
    plugin = plugin_for(make, login_server, id_token_algorithms=["ES256"])
    with pytest.raises(IDTokenError, match="not one of id_token_algorithms") as caught:
        me(pipeline_for(plugin, login_server), login_server)
    assert caught.value.check == "alg"
    assert login_server.jwks_calls == 0


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_id_tokens_signed_by_each_published_key_kind_are_accepted(
    make: Any, login_server: LoginServer, alg: str
) -> None:
    """RSA (PKCS#1 v1.5 and PSS) and P-256 signatures by the issuer's published keys verify."""
    key = login_server.ec_key if alg == "ES256" else login_server.rsa_key
    sign_with(key, alg)(login_server)
    pipeline = pipeline_for(plugin_for(make, login_server), login_server)
    assert me(pipeline, login_server).json() == {"user": "alice"}
    assert decode(login_server.id_tokens[-1])[0]["alg"] == alg


def test_a_rotated_key_is_fetched_once_and_a_stale_set_at_most_once_a_minute(
    make: Any, login_server: LoginServer
) -> None:
    """A kid not in the cached JWKS makes one new fetch when the last is a minute old; before
    that, the unknown key is refused without asking again."""
    clock = [1000.0]
    plugin = plugin_for(make, login_server, _clock=lambda: clock[0])
    me(pipeline_for(plugin, login_server), login_server)
    assert login_server.jwks_calls == 1
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
    login_server.published.append(rotated)
    login_server.signing_key = rotated
    with pytest.raises(IDTokenError, match="no RS256 key with kid 'rsa-2'"):
        me(pipeline_for(plugin, login_server), login_server)
    assert login_server.jwks_calls == 1
    clock[0] += 61
    assert me(pipeline_for(plugin, login_server), login_server).is_success
    assert login_server.jwks_calls == 2


def test_a_withdrawn_key_is_no_longer_trusted_after_an_hour(
    make: Any, login_server: LoginServer
) -> None:
    """The cached JWKS is fetched again once an hour old: a key the issuer withdrew stops
    verifying."""
    clock = [1000.0]
    plugin = plugin_for(make, login_server, _clock=lambda: clock[0])
    me(pipeline_for(plugin, login_server), login_server)
    login_server.published = [ECKey.generate_key("P-256", parameters={"kid": "ec-2"})]
    clock[0] += 3601
    with pytest.raises(IDTokenError) as caught:
        me(pipeline_for(plugin, login_server), login_server)
    assert caught.value.check == "signature"
    assert login_server.jwks_calls == 2


def test_a_device_login_checks_the_id_token_too(make: Any, login_server: LoginServer) -> None:
    """The device flow's ID token is validated like the browser's (it has no nonce to check)."""
    login_server.id_token_claims = {"iss": "https://another-issuer.example"}
    plugin = plugin_for(
        make,
        login_server,
        login="device",
        open_browser=None,
        show_device_code=lambda code: login_server.approve(code.user_code),
    )
    with pytest.raises(IDTokenError) as caught:
        me(pipeline_for(plugin, login_server), login_server)
    assert caught.value.check == "iss"
    login_server.id_token_claims = {}
    assert me(pipeline_for(plugin, login_server), login_server).json() == {"user": "alice"}
