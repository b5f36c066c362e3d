from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
# The JWT plugin (a sibling distribution) is used from its source tree when it is not installed.
_JWT_SRC = HERE.parent.parent / "asapp-auth-jwt" / "src"
if _JWT_SRC.is_dir():
    sys.path.append(str(_JWT_SRC))

import authserver  # noqa: E402

SECRETS: set[str] = set()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[set[str]]:
    """Fail the test when any log record (any logger, DEBUG and up) holds a secret it used."""
    SECRETS.clear()
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield SECRETS
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    secrets = {s for s in SECRETS if s and len(s) >= 6}
    texts = []
    for record in handler.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    everything = "\n".join(texts)
    leaked = [s for s in secrets if s in everything]
    assert not leaked, f"{len(leaked)} secret value(s) leaked into the log"


@pytest.fixture
def auth() -> Iterator[authserver.AuthServer]:
    server = authserver.AuthServer()
    running = authserver.start(server)
    try:
        yield server
    finally:
        SECRETS.update(server.secrets)
        server.release()
        running.stop()


@pytest.fixture
def login_server() -> Iterator[Any]:
    """The authorization server with the login's parts (``loginserver``), and a public client
    ``app`` that may use them."""
    import loginserver

    server = loginserver.LoginServer()
    running = loginserver.start(server)
    server.add_login_client()
    try:
        yield server
    finally:
        SECRETS.update(server.secrets)
        running.stop()


@pytest.fixture
def ec_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


class PyJWTSigner:
    """A minimal signer with the JWT plugin's ``sign`` shape, used when that plugin is absent."""

    def __init__(self, key: Any, algorithm: str = "ES256", kid: str = "k1") -> None:
        self.key, self.algorithm, self.kid = key, algorithm, kid
        self.signed: list[str] = []

    def sign(self, claims: Any, headers: Any = None) -> str:
        import jwt

        token = jwt.encode(
            dict(claims),
            self.key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )
        self.signed.append(token)
        SECRETS.add(token)
        return token

    def public_jwk(self) -> dict[str, Any]:
        import json

        import jwt

        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg=self.algorithm, use="sig")
        return dict(jwk)


@pytest.fixture(params=["asapp_auth_jwt", "pyjwt"])
def signer(request: pytest.FixtureRequest, ec_key: Any) -> Any:
    """A signer: the JWT plugin's ``Signer`` when importable, and a PyJWT stand-in."""
    if request.param == "pyjwt":
        return PyJWTSigner(ec_key)
    try:
        from asapp_auth_jwt import Signer
    except ImportError:
        pytest.skip("asapp-auth-jwt is not importable")
    real = Signer(ec_key, algorithm="ES256", kid="k1")

    class Recording:
        def sign(self, claims: Any, headers: Any = None) -> str:
            token = real.sign(claims, headers)
            SECRETS.add(token)
            return str(token)

        def public_jwk(self) -> dict[str, Any]:
            return dict(real.public_jwk())

    return Recording()


@pytest.fixture
def make() -> Iterator[Any]:
    """A factory of OAuth2Provider objects, each closed after the test."""
    from asapp_auth_oauth2 import OAuth2Provider

    made: list[OAuth2Provider] = []

    def factory(**settings: Any) -> OAuth2Provider:
        plugin = OAuth2Provider(**settings)
        made.append(plugin)
        return plugin

    yield factory
    for plugin in made:
        plugin.close()
