"""Published examples reproduced byte for byte, where the algorithm is deterministic."""

from __future__ import annotations

from asapp_auth_jwt import Signer

# RFC 7515 appendix A.1: HS256, with a header and payload whose exact bytes (CRLF and spaces
# included) are part of the example.
RFC7515_A1_KEY = {
    "kty": "oct",
    "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
}
RFC7515_A1_HEADER = b'{"typ":"JWT",\r\n "alg":"HS256"}'
RFC7515_A1_PAYLOAD = b'{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}'
RFC7515_A1_JWS = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)

# RFC 8037 appendices A.1-A.4: an Ed25519 key, its thumbprint and a signature.
RFC8037_KEY = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
    ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def test_rfc7515_a1_hs256() -> None:
    """The RFC 7515 A.1 HS256 example comes out byte for byte."""
    signer = Signer.from_jwk(RFC7515_A1_KEY, algorithm="HS256")
    assert signer.sign_bytes(RFC7515_A1_PAYLOAD, header=RFC7515_A1_HEADER) == RFC7515_A1_JWS


def test_rfc8037_a4_eddsa() -> None:
    """The RFC 8037 A.4 Ed25519 example comes out byte for byte."""
    signer = Signer.from_jwk(RFC8037_KEY)
    assert signer.algorithm == "EdDSA"
    token = signer.sign_bytes(b"Example of Ed25519 signing", header=b'{"alg":"EdDSA"}')
    assert token == RFC8037_JWS


def test_rfc8037_a3_thumbprint_is_the_default_kid() -> None:
    """The RFC 8037 A.3 key's default kid is the thumbprint the RFC gives."""
    signer = Signer.from_jwk(RFC8037_KEY)
    assert signer.kid == RFC8037_THUMBPRINT
    assert signer.public_jwk()["x"] == RFC8037_KEY["x"]


def test_sign_bytes_refuses_a_header_for_another_algorithm() -> None:
    """sign_bytes refuses a header whose alg is not the signer's."""
    import pytest

    from asapp_auth.errors import ConfigurationError

    signer = Signer.from_jwk(RFC8037_KEY)
    with pytest.raises(ConfigurationError, match="alg"):
        signer.sign_bytes(b"x", header=b'{"alg":"none"}')
