"""The test authorization server (``authserver.AuthServer``) with what a login needs, on authlib's
server components: the authorization code grant with PKCE required (RFC 7636), OpenID Connect ID
tokens signed with a published key (a JWKS), the device authorization grant (RFC 8628), and the
pages a customer would see: ``/authorize`` (the login page, answered at once for ``login_as``)
and ``/device`` (where the device's code is entered). ``/api/me`` is a resource that needs an
access token this server issued, as the platform would.

Every way a server can go wrong for the client is a knob: ``id_token_claims`` overrides claims,
``id_token_alg`` and ``signing_key`` sign otherwise, ``redirect_state`` answers another state
(``""``: none), ``advertise_iss`` and ``iss_param`` are RFC 9207's, ``slow_down`` answers
slow_down that many times.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749 import OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant
from authlib.oidc.core import OpenIDCode, OpenIDToken
from authserver import ALL_METHODS, AuthServer, Client, Running, _Handler, _Request
from joserfc.jwk import ECKey, KeySet, RSAKey

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
LOGIN_GRANTS = ("authorization_code", "refresh_token", DEVICE)


@dataclass
class LoginClient(Client):
    """A native app's client: any loopback port on its redirect path (RFC 8252 section 7.3)."""

    redirect_path: str = "/callback"
    scope: str = "openid read write"

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        parts = urlsplit(redirect_uri)
        return (
            parts.scheme == "http"
            and parts.hostname == "127.0.0.1"
            and parts.port is not None
            and parts.path == self.redirect_path
        )

    def get_default_redirect_uri(self) -> None:
        return None

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _AuthorizationCode(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.server.codes[code] = _Code(
            code,
            request.client.client_id,
            data["redirect_uri"],
            request.scope,
            request.user,
            data.get("nonce"),
            data.get("code_challenge"),
            data.get("code_challenge_method"),
        )
        self.server.secrets.add(code)

    def query_authorization_code(self, code: str, client: Client) -> _Code | None:
        found = self.server.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        self.server.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: _Code) -> str:
        return authorization_code.user


class _IDTokens(OpenIDToken):
    """ID tokens as the server's knobs say: claims overridden last, any alg, any key."""

    def __init__(self, server: LoginServer) -> None:
        self.server = server

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.server.signing_key

    def get_client_algorithm(self, client: Client) -> str:
        return self.server.id_token_alg

    def get_encode_header(self, client: Client) -> dict[str, Any]:
        return {"alg": self.server.id_token_alg, "kid": self.server.signing_key.kid}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.server.base_url, "aud": [client.client_id], "exp": now + 300}

    def generate_user_info(self, user: str, scope: str) -> dict[str, Any]:
        # Applied after every other claim: the knob can override iss, aud, exp, nonce...
        return {"sub": user, "email": f"{user}@example.com", **self.server.id_token_claims}

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        made = self._encode(token, request)
        self.server.secrets.add(made)
        self.server.id_tokens.append(made)
        return made

    def _encode(self, token: dict[str, Any], request: Any) -> str:
        if self.server.id_token_alg != "none":
            return str(super().encode_id_token(token, request))
        # joserfc will not make an unsigned token: made here, as an attacker would.
        self.server.id_token_alg = "RS256"
        try:
            signed = str(super().encode_id_token(token, request))
        finally:
            self.server.id_token_alg = "none"
        claims = signed.split(".")[1]
        header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
        return f"{header}.{claims}."


class _OpenIDCode(OpenIDCode, _IDTokens):
    def __init__(self, server: LoginServer) -> None:
        OpenIDCode.__init__(self, require_nonce=False)
        _IDTokens.__init__(self, server)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False


@dataclass
class _DeviceCredential:
    client_id: str
    scope: str
    user_code: str
    expires_at: float

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at


class _DeviceAuthorization(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def get_verification_uri(self) -> str:
        return str(self.server.base_url + "/device")

    def create_endpoint_response(self, request: Any) -> tuple[int, Any, Any]:
        self.EXPIRES_IN = self.server.device_expires_in
        self.INTERVAL = self.server.device_interval
        return super().create_endpoint_response(request)  # type: ignore[no-any-return]

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        self.server.device_codes[data["device_code"]] = _DeviceCredential(
            client_id, scope, data["user_code"], time.time() + data["expires_in"]
        )
        self.server.secrets.add(data["device_code"])


class _DeviceCode(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def query_device_credential(self, device_code: str) -> _DeviceCredential | None:
        return self.server.device_codes.get(device_code)

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        return self.server.device_grants.get(user_code)

    def should_slow_down(self, credential: _DeviceCredential) -> bool:
        with self.server._lock:
            if self.server.slow_down > 0:
                self.server.slow_down -= 1
                return True
        return False


class LoginServer(AuthServer):
    """``AuthServer`` plus authorization code with PKCE, ID tokens and the device grant."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scopes_supported = ["openid", "read", "write", "admin"]
        self.login_as: str | None = "alice"
        self.codes: dict[str, _Code] = {}
        self.device_codes: dict[str, _DeviceCredential] = {}
        self.device_grants: dict[str, tuple[str, bool]] = {}
        self.device_expires_in = 600
        self.device_interval = 5
        self.slow_down = 0
        self.id_token_claims: dict[str, Any] = {}
        self.id_token_alg = "RS256"
        self.rsa_key = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
        self.ec_key = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
        self.signing_key: Any = self.rsa_key
        self.published = [self.rsa_key, self.ec_key]
        self.redirect_state: str | None = None
        self.advertise_iss = False  # RFC 9207, in the metadata
        self.iss_param: str | None = None  # the iss the redirect carries
        self.id_tokens: list[str] = []
        self.jwks_calls = 0
        self.resource_calls = 0
        self._seen = threading.Condition(self._lock)
        self.authorize_calls = 0
        self.register_grant(_AuthorizationCode, [CodeChallenge(required=True), _OpenIDCode(self)])
        self.register_grant(_DeviceCode, [_IDTokens(self)])
        self.register_endpoint(_DeviceAuthorization)

    def add_login_client(self, client_id: str = "app", **kwargs: Any) -> LoginClient:
        kwargs.setdefault("auth_method", "none")
        kwargs.setdefault("grant_types", LOGIN_GRANTS)
        client = LoginClient(client_id=client_id, **kwargs)
        self.add_client(client)
        return client

    def jwks(self) -> dict[str, Any]:
        return KeySet(self.published).as_dict(private=False)  # type: ignore[no-any-return]

    def metadata(self) -> dict[str, Any]:
        data = super().metadata()
        data.update(
            authorization_endpoint=self.base_url + "/authorize",
            device_authorization_endpoint=self.base_url + "/device_authorization",
            jwks_uri=self.base_url + "/jwks",
            code_challenge_methods_supported=["S256"],
            id_token_signing_alg_values_supported=["RS256", "ES256"],
        )
        data["grant_types_supported"] = [*data["grant_types_supported"], *LOGIN_GRANTS]
        if self.advertise_iss:
            data["authorization_response_iss_parameter_supported"] = True
        return data

    def create_token_response(self, request: Any = None) -> Any:
        for name in ("code", "code_verifier", "device_code"):
            if request.form.get(name):
                self.secrets.add(request.form[name])
        return super().create_token_response(request)

    def wait_for_resource_calls(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``/api/me`` has been asked ``count`` times (True), or ``timeout``."""
        with self._seen:
            return self._seen.wait_for(lambda: self.resource_calls >= count, timeout)

    def approve(self, user_code: str, approved: bool = True) -> None:
        """What the customer does on the ``/device`` page: enter the code, allow or refuse."""
        assert self.login_as is not None
        self.device_grants[user_code] = (self.login_as, approved)


class _LoginHandler(_Handler):
    server: Any

    def do_GET(self) -> None:
        auth: LoginServer = self.server.auth
        target = urlsplit(self.path)
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        if target.path == "/authorize":
            self._authorize(auth, query)
        elif target.path == "/jwks":
            auth.jwks_calls += 1
            self._reply(200, auth.jwks())
        elif target.path == "/device":
            auth.approve(query["user_code"], query.get("decision", "allow") == "allow")
            self._reply(200, b"<p>done</p>", [("Content-Type", "text/html")])
        elif target.path == "/api/me":
            self._resource(auth)
        else:
            super().do_GET()

    def _authorize(self, auth: LoginServer, query: dict[str, str]) -> None:
        auth.authorize_calls += 1
        auth.secrets.update(v for k, v in query.items() if k in ("state", "nonce"))
        multi = {name: [value] for name, value in query.items()}
        request = _Request("GET", auth.base_url + self.path, self.headers, multi, None)
        try:
            grant = auth.get_consent_grant(request, end_user=auth.login_as)
        except OAuth2Error as error:  # no redirect URI to send it to: shown on the page
            self._reply(400, {"error": error.error})
            return
        status, body, headers = auth.create_authorization_response(
            request, grant_user=auth.login_as, grant=grant
        )
        location = dict(headers).get("Location")
        if location is not None:
            parts = urlsplit(location)
            answer = dict(parse_qsl(parts.query))
            if auth.redirect_state == "":
                del answer["state"]
            elif auth.redirect_state is not None:
                answer["state"] = auth.redirect_state
            if auth.iss_param is not None:
                answer["iss"] = auth.iss_param
            location = urlunsplit(parts._replace(query=urlencode(answer)))
            headers = [("Location", location)]
        self._reply(status, body if body else b"", headers)

    def _resource(self, auth: LoginServer) -> None:
        with auth._seen:
            auth.resource_calls += 1
            auth._seen.notify_all()
        header = self.headers.get("Authorization", "")
        token = auth.by_access.get(header[7:]) if header.startswith("Bearer ") else None
        if not header:
            self._reply(
                401, {"error": "login_required"}, [("WWW-Authenticate", 'Bearer realm="api"')]
            )
        elif token is None or token.revoked or time.time() > token.issued_at + token.expires_in:
            challenge = 'Bearer realm="api", error="invalid_token"'
            self._reply(401, {"error": "invalid_token"}, [("WWW-Authenticate", challenge)])
        else:
            self._reply(200, {"user": token.user})

    def do_POST(self) -> None:
        auth: LoginServer = self.server.auth
        if urlsplit(self.path).path != "/device_authorization":
            super().do_POST()
            return
        length = int(self.headers.get("Content-Length", "0"))
        multi: dict[str, list[str]] = {}
        for key, value in parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True):
            multi.setdefault(key, []).append(value)
        request = _Request("POST", auth.base_url + self.path, self.headers, multi, None)
        with auth._lock:
            auth.calls["device_authorization"] += 1
            auth.forms.append(multi)
        status, body, headers = auth.create_endpoint_response("device_authorization", request)
        self._reply(status, body, headers)


def start(auth: LoginServer) -> Running:
    running = Running(_LoginHandler, auth)
    auth.base_url = running.url
    return running


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ID token's header and claims, unverified: for tests that look inside one."""
    head, body = (
        json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in token.split(".")[:2]
    )
    return head, body


def other_key() -> RSAKey:
    """A key nobody published, with the kid of the published one: a forger's."""
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
