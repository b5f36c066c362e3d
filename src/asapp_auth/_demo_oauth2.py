"""``asapp-auth demo --provider oauth2``: the backend, and the local OpenID provider it logs in at.

A ``FakePlatform`` of its own serves what the OAuth2 plugin's device login needs: RFC 8414
metadata, device authorization (RFC 8628), a token endpoint (the device code grant, and refresh
tokens, rotated) for one confidential client, and ES256 ID tokens with the JWKS that verifies
them. Its access tokens are the chat platform's own. The customer who logs in is played by the
demo, entering the code shown (``enter``).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from ._demo_backend import LIFETIME, Backend, Platform, check, write_secret
from .testing import Exchange, FakePlatform

if TYPE_CHECKING:
    from .pipeline import AuthPipeline
    from .plugins import PluginInfo

__all__ = ["DemoAuthorizationServer", "OAuth2Backend"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DemoAuthorizationServer:
    """An authorization server on 127.0.0.1 for the client ``client_id`` with ``secret``, issuing
    ``platform`` tokens of ``lifetime`` seconds. ``refresh_grants`` counts refresh-token grants."""

    def __init__(
        self, platform: FakePlatform, *, client_id: str, secret: str, lifetime: int
    ) -> None:
        # cryptography comes with the oauth2 plugin: the core does not depend on it.
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

        self.platform = platform
        self.client_id = client_id
        self._secret = secret
        self.lifetime = lifetime
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._lock = threading.Lock()
        self._devices: dict[str, list[str | None]] = {}  # device code -> [user code, user]
        self._refresh: dict[str, str] = {}  # refresh token -> user
        self.refresh_grants = 0
        self.server = FakePlatform().start()
        self.server.route("/.well-known/oauth-authorization-server", self._metadata)
        self.server.route("/oauth/device", self._device_authorization)
        self.server.route("/oauth/token", self._token)
        self.server.route("/oauth/jwks", self._jwks)

    @property
    def url(self) -> str:
        return self.server.url

    def enter(self, user_code: str, user: str) -> None:
        """What the customer does at the verification URI: enter the code, as ``user``."""
        with self._lock:
            for device in self._devices.values():
                if device[0] == user_code:
                    device[1] = user

    def close(self) -> None:
        self.server.stop()

    # -- the endpoints --------------------------------------------------------------------------

    def _metadata(self, exchange: Exchange) -> None:
        exchange.answer(
            200,
            {
                "issuer": self.url,
                "token_endpoint": f"{self.url}/oauth/token",
                "device_authorization_endpoint": f"{self.url}/oauth/device",
                "jwks_uri": f"{self.url}/oauth/jwks",
                "grant_types_supported": [DEVICE_GRANT, "refresh_token"],
            },
        )

    def _jwks(self, exchange: Exchange) -> None:
        numbers = self._key.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "kid": "demo-idp",
            "alg": "ES256",
            "use": "sig",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        exchange.answer(200, {"keys": [jwk]})

    def _client_ok(self, exchange: Exchange) -> bool:
        scheme, _, credentials = (exchange.headers.get("Authorization") or "").partition(" ")
        try:
            client, _, secret = base64.b64decode(credentials).decode().partition(":")
        except ValueError:  # binascii.Error and UnicodeDecodeError among them
            client = secret = ""
        known = scheme == "Basic" and unquote(client) == self.client_id
        if known and secrets.compare_digest(unquote(secret), self._secret):
            return True
        exchange.answer(401, {"error": "invalid_client"})
        return False

    def _device_authorization(self, exchange: Exchange) -> None:
        if not self._client_ok(exchange):
            return
        device_code = secrets.token_urlsafe(24)
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        with self._lock:
            self._devices[device_code] = [user_code, None]
        exchange.answer(
            200,
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": f"{self.url}/device",
                "verification_uri_complete": f"{self.url}/device?user_code={user_code}",
                "expires_in": 600,
                "interval": 5,
            },
        )

    def _token(self, exchange: Exchange) -> None:
        if not self._client_ok(exchange):
            return
        form = {name: values[0] for name, values in parse_qs(exchange.body.decode()).items()}
        grant = form.get("grant_type")
        with self._lock:
            if grant == DEVICE_GRANT:
                device = self._devices.get(form.get("device_code", ""))
                if device is None:
                    exchange.answer(400, {"error": "invalid_grant"})
                    return
                user = device[1]
                if user is None:
                    exchange.answer(400, {"error": "authorization_pending"})
                    return
                del self._devices[form["device_code"]]
            elif grant == "refresh_token":
                found = self._refresh.pop(form.get("refresh_token", ""), None)
                if found is None:
                    exchange.answer(400, {"error": "invalid_grant"})
                    return
                user = found
                self.refresh_grants += 1
            else:
                exchange.answer(400, {"error": "unsupported_grant_type"})
                return
            refresh = secrets.token_urlsafe(24)  # rotated on every use
            self._refresh[refresh] = user
        answer: dict[str, Any] = {
            "access_token": self.platform.issue_token(user, self.lifetime),
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "refresh_token": refresh,
        }
        if grant == DEVICE_GRANT:
            answer["id_token"] = self._id_token(user)
        exchange.answer(200, answer)

    def _id_token(self, user: str) -> str:
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - see __init__
        from cryptography.hazmat.primitives.asymmetric import ec, utils  # noqa: PLC0415

        now = int(time.time())
        header = {"alg": "ES256", "kid": "demo-idp", "typ": "JWT"}
        claims = {"iss": self.url, "sub": user, "aud": self.client_id, "iat": now}
        claims["exp"] = now + 300
        signing_input = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = utils.decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class OAuth2Backend(Backend):
    """``asapp-auth-oauth2``, logging the customer in itself: the device flow (RFC 8628) at a
    local OpenID provider, for a client that authenticates with its secret. The customer enters
    the code shown; the plugin checks the ID token, keeps the login's tokens, sets the customer,
    and renews the access token with the (rotated) refresh token."""

    plugin = "oauth2"
    client_id = "company-app"
    logs_in = True

    def __init__(self, platform: Platform, workdir: Path) -> None:
        super().__init__(platform, workdir)
        self.secret_file = workdir / "oauth2-client-secret"
        secret = secrets.token_urlsafe(24)
        write_secret(self.secret_file, secret.encode())
        self.idp = DemoAuthorizationServer(
            platform, client_id=self.client_id, secret=secret, lifetime=LIFETIME
        )
        self.shown: list[str] = []  # the verification URIs the customer was shown
        self.user = "alice"  # who logs in next, at the provider

    @property
    def grants(self) -> int:
        return self.idp.refresh_grants

    def describe(self, info: PluginInfo | None) -> str:
        return (
            f"{super().describe(info)}: device login, ID tokens and refresh tokens at an OpenID "
            f"provider on {self.idp.url}"
        )

    def settings(self) -> dict[str, Any]:
        return {
            "issuer": self.idp.url,
            "client_id": self.client_id,
            "client_secret": f"file:{self.secret_file}",
            "login": "device",
            "scope": "openid",
            "show_device_code": self._show,
        }

    def _show(self, code: Any) -> None:
        """The plugin shows the code; the customer enters it at once (as alice, unless a
        switch said otherwise)."""
        self.shown.append(code.verification_uri)
        self.idp.enter(code.user_code, self.user)
        self.user = "alice"

    def login(self, pipeline: AuthPipeline, customer_id: str) -> None:
        # The app logs the current customer out; the next one to log in is customer_id.
        self.user = customer_id
        pipeline.clear()

    def login_story(self) -> str:
        check(len(self.shown) == 1, f"{len(self.shown)} device codes shown")
        check(self.idp.refresh_grants == 0, "the login's access token was not used")
        return (
            f"401 -> device login (code shown at {self.shown[0]}, entered) -> ID token checked "
            "-> set_customer('alice') -> HTTP 200 as alice, on the login's own token"
        )

    def switch_story(self) -> str:
        return (
            "clear(); bob logs in with a device code -> set_customer('bob') -> the next "
            "request is bob's"
        )

    def close(self, pipeline: AuthPipeline) -> None:
        plugin = pipeline.plugin_manager.get_plugin("oauth2")
        if plugin is not None:
            plugin.close()
        self.idp.close()
