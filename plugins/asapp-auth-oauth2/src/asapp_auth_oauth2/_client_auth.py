"""Client authentication at the token endpoint (RFC 6749 section 2.3, RFC 7523 section 2.2):
``client_secret_basic``, ``client_secret_post``, ``client_secret_jwt``, ``private_key_jwt``, and
the methods that send only the client id (``none``, ``tls_client_auth``)."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from asapp_auth.errors import ProviderError

from . import _secret_jwt as secret_jwt
from ._settings import OAuth2Settings

__all__ = ["ASSERTION_TYPE", "ClientAuth"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class ClientAuth:
    """Adds the client's authentication to a request, and signs the JWTs it sends."""

    def __init__(self, settings: OAuth2Settings) -> None:
        self._settings = settings

    def authenticate(
        self, form: dict[str, Any], headers: dict[str, str], token_endpoint: str
    ) -> list[str]:
        """Add client authentication to a request; return the secret values it holds."""
        s = self._settings
        method = s.client_auth
        if method == "client_secret_basic":
            assert s.client_secret is not None
            secret = s.client_secret.reveal()
            # RFC 6749 section 2.3.1: each part form-urlencoded, then Base64. Percent-encoding
            # every reserved character (space as %20, not +) is read the same by servers that
            # decode with unquote and with unquote_plus.
            pair = f"{quote(s.client_id, safe='')}:{quote(secret, safe='')}"
            encoded = base64.b64encode(pair.encode("utf-8")).decode("ascii")
            headers["Authorization"] = f"Basic {encoded}"
            return [secret, encoded, quote(secret, safe="")]
        form["client_id"] = s.client_id
        if method == "client_secret_post":
            assert s.client_secret is not None
            form["client_secret"] = s.client_secret.reveal()
            return [s.client_secret.reveal()]
        if method in ("private_key_jwt", "client_secret_jwt"):
            claims = self.assertion_claims(s.client_id, s.assertion_audience or token_endpoint)
            if method == "client_secret_jwt":
                assert s.client_secret is not None
                secret = s.client_secret.reveal()
                assertion = secret_jwt.sign(claims, secret, s.token_endpoint_auth_signing_alg)
                scrub = [assertion, secret]
            else:
                assertion = self.sign(claims, "client assertion")
                scrub = [assertion]
                alg = secret_jwt.header_algorithm(assertion)
                if alg is None or alg.upper().startswith("HS") or alg.lower() == "none":
                    raise ProviderError(
                        f"plugin 'oauth2': the signer made a private_key_jwt client assertion "
                        f"with alg {alg!r}, which is no private-key signature (RFC 7523 section "
                        "2.2); give a signer with a private key, or use client_secret_jwt for "
                        "a shared secret",
                        plugin="oauth2",
                    )
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = assertion
            return scrub
        return []  # none, tls_client_auth: the client id, and the certificate on the connection

    def sign(self, claims: Mapping[str, Any], what: str) -> str:
        """``claims`` signed by the ``signer`` setting, as a JWS compact string."""
        signer = self._settings.signer
        assert signer is not None
        try:
            assertion = signer.sign(claims)
        except Exception as exc:
            raise ProviderError(
                f"plugin 'oauth2': the signer failed to sign the {what} ({type(exc).__name__}); "
                "check the signing key and algorithm",
                plugin="oauth2",
            ) from exc
        if not isinstance(assertion, str) or assertion.count(".") != 2:
            raise ProviderError(
                f"plugin 'oauth2': the signer returned no JWS compact string for the {what}",
                plugin="oauth2",
            )
        return assertion

    def assertion_claims(self, subject: str, audience: str) -> dict[str, Any]:
        """The claims of a client or JWT-bearer assertion (RFC 7523 section 3)."""
        now = int(time.time())
        return {
            "iss": self._settings.client_id,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + int(self._settings.assertion_lifetime),
            "jti": secrets.token_urlsafe(18),
        }
