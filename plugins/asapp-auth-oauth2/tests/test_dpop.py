"""DPoP (RFC 9449) end to end: proofs at the token endpoint and at a resource server on
127.0.0.1 that verifies them (dpopserver), through every client adapter."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asapp_auth_oauth2 import OAuth2Error, OAuth2Provider, TokenResponseError
from asapp_auth_oauth2._dpop import DPoPKey, dpop_error
from authserver import AuthServer, Client
from conftest import SECRETS
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from dpopserver import ResourceServer, TokenGate, thumbprint

from asapp_auth import AuthPipeline, Customer
from asapp_auth._any_client import KINDS, open_client
from asapp_auth.errors import ConfigurationError


@pytest.fixture
def gate(auth: AuthServer) -> Iterator[TokenGate]:
    """The authorization server with DPoP required at its token endpoint."""
    auth.add_client(
        Client(client_id="app", auth_method="none", grant_types=("client_credentials",))
    )
    auth.dpop = TokenGate()
    yield auth.dpop
    SECRETS.update(auth.dpop.verifier.proofs)


@pytest.fixture
def resource(gate: TokenGate) -> Iterator[ResourceServer]:
    server = ResourceServer(gate)
    try:
        yield server
    finally:
        SECRETS.update(server.verifier.proofs)
        server.stop()


def dpop_plugin(make: Any, auth: AuthServer, **extra: Any) -> OAuth2Provider:
    plugin: OAuth2Provider = make(
        token_endpoint=auth.token_url, client_id="app", allow_http=True, dpop=True, **extra
    )
    return plugin


def pipeline_for(plugin: OAuth2Provider, *origins: str) -> AuthPipeline:
    pipeline = AuthPipeline(origins=list(origins))
    pipeline.register(plugin, name="oauth2")
    pipeline.load(customer_id="alice")
    return pipeline


@contextlib.contextmanager
def opened(kind: str, pipeline: AuthPipeline) -> Iterator[Any]:
    client = open_client(kind, pipeline)
    try:
        yield client
    finally:
        client.close()


def write_pem(path: Path, key: Any, passphrase: bytes | None = None) -> bytes:
    """Write ``key`` to ``path`` as a PKCS#8 PEM, encrypted with ``passphrase``; its text."""
    encryption: Any = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.write_bytes(pem)
    SECRETS.add(pem.decode())
    return pem


def claims_of(jws: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import base64

    head, body, _ = jws.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(head), decode(body)


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_the_token_endpoint_gets_a_proof_and_issues_a_bound_dpop_token(
    make: Any, auth: AuthServer, gate: TokenGate, algorithm: str
) -> None:
    """Each token request carries a proof the server verifies; the DPoP token is bound to the
    client's key and goes in the context as ``Authorization: DPoP``."""
    plugin = dpop_plugin(make, auth, dpop_algorithm=algorithm)
    context = plugin.provide_context(Customer("alice"), False, None)
    header = context["Auth"]["Headers"]["Authorization"]
    scheme, _, token = header.partition(" ")
    assert scheme == "DPoP"
    assert context.token is None  # never sent as Bearer
    key = plugin.settings.dpop
    assert key is not None
    assert gate.bound[token] == key.jkt
    head, claims = claims_of(gate.verifier.proofs[-1])
    assert head["alg"] == algorithm
    assert head["typ"] == "dpop+jwt"
    assert thumbprint(head["jwk"]) == key.jkt
    assert claims["htm"] == "POST"
    assert claims["htu"] == auth.token_url
    assert "ath" not in claims


def test_a_token_endpoint_nonce_is_taken_and_the_request_sent_once_more(
    make: Any, auth: AuthServer, gate: TokenGate
) -> None:
    """``use_dpop_nonce`` with a ``DPoP-Nonce``: one more request with the nonce; the nonce is
    kept, so the next token request carries it at once."""
    gate.verifier.nonce = "as-nonce-1"
    plugin = dpop_plugin(make, auth)
    plugin.provide_context(Customer("alice"), False, None)
    assert gate.verifier.refusals == ["use_dpop_nonce: nonce"]
    assert claims_of(gate.verifier.proofs[-1])[1]["nonce"] == "as-nonce-1"
    plugin.provide_context(Customer("alice"), True, None)
    assert len(gate.verifier.refusals) == 1
    assert len(gate.verifier.proofs) == 3


def test_a_server_that_keeps_asking_for_a_nonce_gets_two_requests_and_a_typed_error(
    make: Any, auth: AuthServer, gate: TokenGate
) -> None:
    """A nonce that changes on every answer is not chased: one retry, then ``OAuth2Error``."""
    plugin = dpop_plugin(make, auth)
    real = gate.verifier.verify

    def moving(*args: Any, **kwargs: Any) -> Any:
        gate.verifier.nonce = f"n-{len(gate.verifier.proofs)}"
        return real(*args, **kwargs)

    gate.verifier.verify = moving  # type: ignore[method-assign]
    with pytest.raises(OAuth2Error) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    assert caught.value.error == "use_dpop_nonce"
    assert auth.token_url in str(caught.value)
    assert len(gate.verifier.proofs) == 2


def test_a_replayed_proof_is_refused_with_a_typed_error_and_no_loop(
    make: Any, auth: AuthServer, gate: TokenGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sent the same proof twice gets the server's ``invalid_dpop_proof`` as a
    typed error naming the endpoint, after one request, with no proof in the message."""
    plugin = dpop_plugin(make, auth)
    made: list[str] = []
    real = DPoPKey.proof

    def replaying(self: DPoPKey, *args: Any, **kwargs: Any) -> str:
        if not made:
            made.append(real(self, *args, **kwargs))
        return made[0]

    monkeypatch.setattr(DPoPKey, "proof", replaying)
    plugin.provide_context(Customer("alice"), False, None)
    with pytest.raises(OAuth2Error) as caught:
        plugin.provide_context(Customer("alice"), True, None)
    assert caught.value.error == "invalid_dpop_proof"
    assert auth.token_url in str(caught.value)
    assert made[0] not in str(caught.value)
    assert gate.verifier.refusals == ["invalid_dpop_proof: jti replayed"]
    assert len(gate.verifier.proofs) == 2


def test_a_bearer_token_answer_is_refused_when_dpop_is_on(
    make: Any, auth: AuthServer, gate: TokenGate
) -> None:
    """A server that ignored the proof and issued a Bearer token: refused, nothing cached."""
    gate.token_type = "Bearer"
    plugin = dpop_plugin(make, auth)
    with pytest.raises(TokenResponseError, match="not DPoP"):
        plugin.provide_context(Customer("alice"), False, None)


@pytest.mark.parametrize("kind", KINDS)
def test_resource_requests_carry_a_fresh_proof_through_every_client(
    make: Any, auth: AuthServer, gate: TokenGate, resource: ResourceServer, kind: str
) -> None:
    """GET and POST, with a query, reach a server that checks htm, htu, ath, jti and the key
    binding; each request has its own proof, and one token serves them all."""
    pipeline = pipeline_for(dpop_plugin(make, auth), resource.url)
    with opened(kind, pipeline) as client:
        assert client.get(f"{resource.url}/api/one?page=2").status == 200
        assert client.request("POST", f"{resource.url}/api/two", json={"n": 1}).status == 200
        assert client.get(f"{resource.url}/api/one").status == 200
    assert resource.served == ["/api/one", "/api/two", "/api/one"]
    proofs = [proof for _, proof in resource.received]
    assert len(set(proofs)) == 3
    assert [claims_of(p)[1]["htm"] for p in proofs if p] == ["GET", "POST", "GET"]
    assert auth.calls["client_credentials"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_resource_nonce_challenge_is_answered_once_with_the_nonce(
    make: Any, auth: AuthServer, gate: TokenGate, resource: ResourceServer, kind: str
) -> None:
    """``WWW-Authenticate: DPoP error="use_dpop_nonce"``: the request is sent once more with a
    new proof holding the nonce, no new token; later requests carry the nonce at once."""
    resource.verifier.nonce = "rs-nonce-7"
    pipeline = pipeline_for(dpop_plugin(make, auth), resource.url)
    with opened(kind, pipeline) as client:
        assert client.get(f"{resource.url}/api/one").status == 200
        assert client.get(f"{resource.url}/api/two").status == 200
    assert resource.verifier.refusals == ["use_dpop_nonce: nonce"]
    assert [claims_of(p or "")[1].get("nonce") for _, p in resource.received] == [
        None,
        "rs-nonce-7",
        "rs-nonce-7",
    ]
    assert auth.calls["client_credentials"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_resource_proof_is_handed_back_without_a_loop(
    make: Any,
    auth: AuthServer,
    resource: ResourceServer,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """A replayed proof refused by the resource server (``invalid_dpop_proof``): the 401 goes
    back to the caller after one request, and no token is fetched for it."""
    pipeline = pipeline_for(dpop_plugin(make, auth), resource.url)
    with opened(kind, pipeline) as client:
        assert client.get(f"{resource.url}/api/one").status == 200
        replay = resource.received[-1][1]
        monkeypatch.setattr(DPoPKey, "proof", lambda *args, **kwargs: replay)
        assert client.get(f"{resource.url}/api/one").status == 401
    assert resource.verifier.refusals == ["invalid_dpop_proof: jti replayed"]
    assert len(resource.received) == 2
    assert auth.calls["client_credentials"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_token_the_server_no_longer_takes_is_replaced(
    make: Any, auth: AuthServer, gate: TokenGate, resource: ResourceServer, kind: str
) -> None:
    """``DPoP error="invalid_token"`` means a new token: one refresh, the request goes on."""
    pipeline = pipeline_for(dpop_plugin(make, auth), resource.url)
    with opened(kind, pipeline) as client:
        assert client.get(f"{resource.url}/api/one").status == 200
        gate.bound.clear()  # the server forgot the binding: the token is no longer valid
        assert client.get(f"{resource.url}/api/one").status == 200
    assert auth.calls["client_credentials"] == 2


def test_the_server_checks_htm_and_htu(
    make: Any, auth: AuthServer, gate: TokenGate, resource: ResourceServer
) -> None:
    """A valid proof for another method or URL is refused: the resource server's checks that
    the adapters' proofs pass are real ones."""
    plugin = dpop_plugin(make, auth)
    token = plugin.provide_context(Customer("alice"), False, None)["Auth"]["Headers"][
        "Authorization"
    ].removeprefix("DPoP ")
    key = plugin.settings.dpop
    assert key is not None
    for method, url in [("GET", f"{resource.url}/api/one"), ("POST", f"{resource.url}/api/two")]:
        proof = key.proof(method, url, access_token=token)
        response = httpx.post(
            f"{resource.url}/api/two",
            headers={"Authorization": f"DPoP {token}", "DPoP": proof},
        )
        assert response.status_code == (200 if method == "POST" else 401)
    assert resource.verifier.refusals == ["invalid_dpop_proof: htm"]
    proof = key.proof("GET", f"{resource.url}/api/other", access_token=token)
    response = httpx.get(
        f"{resource.url}/api/one", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )
    assert response.status_code == 401
    assert resource.verifier.refusals[-1] == "invalid_dpop_proof: htu"


def test_a_stolen_dpop_token_is_useless_without_the_key(
    make: Any, auth: AuthServer, gate: TokenGate, resource: ResourceServer
) -> None:
    """The token alone, as Bearer or with a proof from another key, is refused."""
    plugin = dpop_plugin(make, auth)
    token = plugin.provide_context(Customer("alice"), False, None)["Auth"]["Headers"][
        "Authorization"
    ].removeprefix("DPoP ")
    url = f"{resource.url}/api/one"
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    thief = DPoPKey.generate()
    proof = thief.proof("GET", url, access_token=token)
    response = httpx.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert response.status_code == 401
    assert dpop_error(response.headers) == "invalid_token"
    assert resource.served == []


@pytest.mark.parametrize("kind", KINDS)
def test_the_token_and_proof_never_reach_another_origin(
    make: Any, auth: AuthServer, gate: TokenGate, resource: ResourceServer, kind: str
) -> None:
    """A redirect to a second loopback origin carries neither the DPoP token nor a proof."""
    other = ResourceServer(gate)
    try:
        pipeline = pipeline_for(dpop_plugin(make, auth), resource.url)
        with opened(kind, pipeline) as client:
            result = client.get(f"{resource.url}/hop?to={other.url}/open")
        assert result.status == 200
        assert other.received == [(None, None)]
        assert resource.received[0][0] is not None
        assert resource.received[0][1] is not None
    finally:
        other.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_a_redirect_within_the_resource_origin_is_accepted_with_a_proof_for_its_hop(
    make: Any, auth: AuthServer, gate: TokenGate, resource: ResourceServer, kind: str
) -> None:
    """A 302 from ``/hop`` to ``/api/one`` on the same server: the hop's proof names
    ``/api/one`` with a new jti, so the server that checks htm, htu and replays serves it."""
    pipeline = pipeline_for(dpop_plugin(make, auth), resource.url)
    with opened(kind, pipeline) as client:
        result = client.get(f"{resource.url}/hop?to={resource.url}/api/one")
    assert result.status == 200
    assert resource.verifier.refusals == []
    assert resource.served == ["/api/one"]
    first, hop = (claims_of(proof or "")[1] for _, proof in resource.received)
    assert (first["htu"], hop["htu"]) == (f"{resource.url}/hop", f"{resource.url}/api/one")
    assert first["jti"] != hop["jti"]


def test_a_key_from_a_pem_file_signs_the_proofs(
    make: Any, auth: AuthServer, gate: TokenGate, tmp_path: Path
) -> None:
    """``dpop_key`` (a PEM path, an encrypted key with its passphrase) is the key tokens are
    bound to; its algorithm follows the key."""
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "dpop.pem"
    write_pem(path, key, b"pass-phrase-1")
    SECRETS.add("pass-phrase-1")
    plugin = dpop_plugin(make, auth, dpop_key=str(path), dpop_key_passphrase="pass-phrase-1")
    context = plugin.provide_context(Customer("alice"), False, None)
    token = context["Auth"]["Headers"]["Authorization"].removeprefix("DPoP ")
    assert gate.bound[token] == DPoPKey(key).jkt
    assert claims_of(gate.verifier.proofs[-1])[0]["alg"] == "EdDSA"
    for shown in (repr(plugin), repr(plugin.settings), str(context), repr(context)):
        assert token not in shown
        assert "pass-phrase-1" not in shown


def test_dpop_settings_problems_are_reported_together_in_file_order(tmp_path: Path) -> None:
    """Every DPoP setting problem at once, in the order given, each naming its setting."""
    rsa_path = tmp_path / "p384.pem"
    write_pem(rsa_path, ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ConfigurationError) as caught:
        OAuth2Provider(
            dpop_algorithm="RS256",
            token_endpoint="https://as.example/token",
            client_id="app",
            dpop="yes",
        )
    assert caught.value.problems == (
        "setting 'dpop_algorithm' must be one of ['ES256', 'EdDSA'], got 'RS256'",
        "setting 'dpop' must be true or false, got str",
    )
    with pytest.raises(ConfigurationError) as caught:
        OAuth2Provider(
            token_endpoint="https://as.example/token",
            client_id="app",
            dpop_key=str(rsa_path),
        )
    assert caught.value.problems == (
        "setting 'dpop_key' applies only with dpop = true; set dpop or remove it",
    )
    with pytest.raises(ConfigurationError) as caught:
        OAuth2Provider(
            token_endpoint="https://as.example/token",
            client_id="app",
            dpop=True,
            dpop_key=str(rsa_path),
        )
    assert "EC P-256 (ES256) or Ed25519 (EdDSA)" in str(caught.value)
    assert "dpop_key" in str(caught.value)


def test_without_dpop_the_plugin_has_no_request_path_hooks(make: Any, auth: AuthServer) -> None:
    """With dpop off the pipeline finds no request_proof or classify_response to call."""
    auth.add_client(
        Client(client_id="app", auth_method="none", grant_types=("client_credentials",))
    )
    plain = make(token_endpoint=auth.token_url, client_id="app", allow_http=True)
    pipeline = AuthPipeline(origins=["http://127.0.0.1"])
    pipeline.register(plain, name="oauth2")
    assert pipeline._proofs is None
    assert pipeline._classifies is None
    with_dpop = make(token_endpoint=auth.token_url, client_id="app", allow_http=True, dpop=True)
    pipeline.register(with_dpop, name="oauth2-dpop")
    assert pipeline._proofs is not None
    assert pipeline._classifies is not None


def test_no_proof_or_token_in_the_logs_at_debug(
    make: Any,
    auth: AuthServer,
    gate: TokenGate,
    resource: ResourceServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A nonce round at both servers logs at DEBUG without any token or proof (the
    log-secrets guard holds every proof both servers saw)."""
    caplog.set_level(logging.DEBUG)
    gate.verifier.nonce = "as-n"
    resource.verifier.nonce = "rs-n"
    pipeline = pipeline_for(dpop_plugin(make, auth), resource.url)
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{resource.url}/api/one").status_code == 200
    assert len(gate.verifier.proofs) == 2
    assert len(resource.verifier.proofs) == 2


def test_a_wrong_dpop_key_passphrase_is_blamed_on_that_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encrypted dpop_key with a passphrase that does not open it names
    dpop_key_passphrase, as signing_key's does, and shows neither the key nor the passphrase."""
    path = tmp_path / "dpop.pem"
    write_pem(path, ec.generate_private_key(ec.SECP256R1()), b"the-right-passphrase")
    SECRETS.update({"the-right-passphrase", "a-wrong-passphrase"})
    monkeypatch.setenv("OAUTH2_TEST_DPOP_PASSPHRASE", "a-wrong-passphrase")
    with pytest.raises(ConfigurationError) as caught:
        OAuth2Provider(
            token_endpoint="https://as.example/token",
            client_id="app",
            dpop=True,
            dpop_key=str(path),
            dpop_key_passphrase="env:OAUTH2_TEST_DPOP_PASSPHRASE",
        )
    assert "setting 'dpop_key_passphrase' does not decrypt 'dpop_key'" in str(caught.value)
    assert "a-wrong-passphrase" not in str(caught.value)
