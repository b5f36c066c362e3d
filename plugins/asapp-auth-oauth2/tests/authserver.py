"""A real OAuth 2.0 authorization server for the end-to-end tests, built on authlib's server
components (independent of the plugin's code): client_credentials, refresh_token with rotation,
token exchange (RFC 8693, a small grant class: authlib has none), JWT bearer (RFC 7523 section
2.1), client authentication by client_secret_basic, client_secret_post, client_secret_jwt and
private_key_jwt (RFC 7523 section 2.2), tls_client_auth (RFC 8705) and none; revocation (RFC
7009) and RFC 8414 metadata.

It serves HTTP (or HTTPS with client certificates) on 127.0.0.1 from a thread, counts every
token-endpoint call by grant type, and records every form it receives.
"""

from __future__ import annotations

import collections
import hmac
import json
import logging
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    BaseGrant,
    ClientMixin,
    OAuth2Request,
    TokenEndpointMixin,
    grants,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerGrant
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

# authlib logs issued tokens at DEBUG; the tests fail on any secret in the logs, and this server
# is not the code under test.
logging.getLogger("authlib").setLevel(logging.WARNING)
# authlib refuses plain-HTTP URIs unless told this is a test.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

ALL_METHODS = [
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "none",
]
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")


@dataclass
class Client(ClientMixin):
    client_id: str
    auth_method: str
    grant_types: tuple[str, ...]
    secret: str | None = None
    public_jwk: dict[str, Any] | None = None
    cert_cn: str | None = None
    scope: str = "read write admin"

    def get_client_id(self) -> str:
        return self.client_id

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and hmac.compare_digest(
            self.secret.encode(), client_secret.encode()
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class Token:
    client_id: str
    user: str | None
    scope: str
    access_token: str
    refresh_token: str | None
    expires_in: int
    revoked: bool = False
    issued_at: float = field(default_factory=time.time)

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user(self) -> str | None:
        return self.user


class _Request(OAuth2Request):
    def __init__(
        self, method: str, uri: str, headers: Any, multi: dict[str, list[str]], peer: Any
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._form = {k: v[0] for k, v in multi.items()}
        self.multi = multi
        self.payload = BasicOAuth2Payload(self._form)
        self.peer_cert = peer

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS


class _Refresh(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    @property
    def INCLUDE_NEW_REFRESH_TOKEN(self) -> bool:
        return bool(self.server.rotate)

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = self.server.by_refresh.get(refresh_token)
        if token is None or token.revoked:
            self.server.refused_refresh.append(refresh_token)
            return None
        return token

    def authenticate_user(self, refresh_token: Token) -> str | None:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        if self.server.rotate:
            refresh_token.revoked = True


class _TokenExchange(BaseGrant, TokenEndpointMixin):
    GRANT_TYPE = EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("token exchange is not allowed for this client")
        form = self.request.form
        subject, kind = form.get("subject_token"), form.get("subject_token_type")
        if not subject or not kind:
            raise InvalidRequestError("subject_token and subject_token_type are required")
        if kind != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError("unsupported subject_token_type")
        user = self.server.site_sessions.get(subject)
        if user is None:
            raise InvalidGrantError("the subject token is not a valid site session")
        self.request.client = client
        self.request.user = user
        self.validate_requested_scope()

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(
            user=self.request.user, scope=self.request.payload.scope, include_refresh_token=False
        )
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _JWTBearer(JWTBearerGrant):
    def resolve_issuer_client(self, issuer: str) -> Client | None:
        return self.server.clients.get(issuer)

    def resolve_client_public_key(self, client: Client) -> dict[str, Any]:
        assert client.public_jwk is not None
        return client.public_jwk

    def authenticate_user(self, subject: str) -> str | None:
        return subject if subject in self.server.users else None

    def has_granted_permission(self, client: Client, user: str) -> bool:
        return True

    def get_audiences(self) -> list[str]:
        return [self.server.token_url]


class _PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: AuthServer) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.server = server
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def get_audiences(self) -> list[str]:
        return [self.server.token_url]

    def __call__(self, query_client: Callable[[str], Client | None], request: Any) -> Any:
        # authlib tries each method in turn: leave the assertions of clients registered for
        # the other assertion method (private_key_jwt or client_secret_jwt) to that method.
        assertion = request.form.get("client_assertion")
        if assertion:
            _, claims = self.extract_assertion(assertion)
            sub = claims.get("sub")
            client = query_client(sub) if isinstance(sub, str) else None
            if client is not None and client.auth_method != self.CLIENT_AUTH_METHOD:
                return None
        return super().__call__(query_client, request)

    def validate_jti(self, claims: Any, jti: str) -> bool:
        with self._lock:
            if jti in self._seen:
                return False
            self._seen.add(jti)
            return True

    def resolve_client_public_key(self, client: Client) -> dict[str, Any]:
        assert client.public_jwk is not None
        return client.public_jwk


class _ClientSecretJWT(_PrivateKeyJWT):
    """RFC 7523 section 2.2 with an HMAC of the client secret: HS256, HS384 or HS512 only."""

    CLIENT_AUTH_METHOD = "client_secret_jwt"

    def resolve_client_public_key(self, client: Client) -> Any:
        assert client.secret is not None
        return OctKey.import_key(client.secret)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(HMAC_ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description=exc.description) from exc
        self.server.assertion_algorithms.append(token.header["alg"])
        self.verify_claims(token.claims)
        return token.claims


def _tls_client_auth(query_client: Callable[[str], Client | None], request: _Request) -> Any:
    client_id = request.form.get("client_id")
    cert = getattr(request, "peer_cert", None)
    if not client_id or not cert:
        return None
    client = query_client(client_id)
    subject = dict(item for rdn in cert.get("subject", ()) for item in rdn)
    if client is not None and client.cert_cn and subject.get("commonName") == client.cert_cn:
        return client
    return None


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        server: AuthServer = self.server
        if token_type_hint != "refresh_token" and token_string in server.by_access:
            return server.by_access[token_string]
        return server.by_refresh.get(token_string) or server.by_access.get(token_string)

    def revoke_token(self, token: Token, request: Any) -> None:
        token.revoked = True
        self.server.revoked.append(request.form["token"])


class AuthServer(AuthorizationServer):
    """The authorization server, its clients, users and issued tokens."""

    def __init__(self, *, lifetime: int = 3600, rotate: bool = True) -> None:
        super().__init__(scopes_supported=["read", "write", "admin"])
        self.lifetime = lifetime
        self.rotate = rotate
        self.delay = 0.0
        self.clients: dict[str, Client] = {}
        self.users: set[str] = set()
        self.site_sessions: dict[str, str] = {}
        self.by_access: dict[str, Token] = {}
        self.by_refresh: dict[str, Token] = {}
        self.revoked: list[str] = []
        self.refused_refresh: list[str] = []
        # The alg of each client_secret_jwt assertion it verified.
        self.assertion_algorithms: list[str] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.forms: list[dict[str, list[str]]] = []
        self.secrets: set[str] = set()
        self.base_url = ""
        # A dpopserver.TokenGate: DPoP proofs required at the token endpoint, tokens bound.
        self.dpop: Any = None
        self._lock = threading.Lock()
        # Paths whose requests are accepted and never answered (stall), and how many came.
        self._stall = threading.Condition()
        self._stalled_paths: frozenset[str] = frozenset()
        self._answer_stalled = False
        self._released = True
        self.stalled: collections.Counter[str] = collections.Counter()
        self.register_token_generator("default", self._generate)
        self.register_grant(_ClientCredentials)
        self.register_grant(_Refresh)
        self.register_grant(_TokenExchange)
        self.register_grant(_JWTBearer)
        self.register_endpoint(_Revocation)
        self.register_client_auth_method("private_key_jwt", _PrivateKeyJWT(self))
        self.register_client_auth_method("client_secret_jwt", _ClientSecretJWT(self))
        self.register_client_auth_method("tls_client_auth", _tls_client_auth)

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    # -- test set-up ----------------------------------------------------------------------------

    def add_client(self, client: Client) -> Client:
        self.clients[client.client_id] = client
        if client.secret:
            self.secrets.add(client.secret)
        return client

    def login(self, client_id: str, user: str, scope: str = "read") -> str:
        """What the app's own login flow would do: issue a refresh token for ``user``."""
        return str(self.login_token(client_id, user, scope)["refresh_token"])

    def login_token(self, client_id: str, user: str, scope: str = "read") -> dict[str, Any]:
        """The whole token response a login gives ``user``: access and refresh token, scope."""
        self.users.add(user)
        token = self._generate("authorization_code", self.clients[client_id], user, scope)
        self._store(
            Token(
                client_id,
                user,
                scope,
                token["access_token"],
                token["refresh_token"],
                token["expires_in"],
            )
        )
        return token

    def site_login(self, user: str) -> str:
        """A site session token for ``user``, as the customer's own site would issue."""
        self.users.add(user)
        session = "site-" + secrets.token_urlsafe(16)
        self.site_sessions[session] = user
        self.secrets.add(session)
        return session

    def stall(self, *paths: str, answered: bool = False) -> None:
        """From now on, requests to ``paths`` are read and never answered, until ``release``;
        ``answered``: they are acted on (tokens issued) and their answers held until then."""
        with self._stall:
            self._stalled_paths = frozenset(paths)
            self._answer_stalled = answered
            self._released = False

    def release(self) -> None:
        """Let the stalled requests go: their connections are closed, still unanswered, or
        their held answers sent."""
        with self._stall:
            self._stalled_paths = frozenset()
            self._released = True
            self._stall.notify_all()

    def wait_stalled(self, path: str, count: int = 1) -> bool:
        """Wait (30 s at most) until ``count`` requests to ``path`` are stalled."""
        with self._stall:
            return self._stall.wait_for(lambda: self.stalled[path] >= count, timeout=30)

    def hold(self, path: str, *, answered: bool = False) -> bool:
        """Called by the handler before acting on a request (``answered`` after, with its
        answer ready): stall it if its path is stalled that way."""
        with self._stall:
            if path not in self._stalled_paths or answered != self._answer_stalled:
                return False
            self.stalled[path] += 1
            self._stall.notify_all()
            self._stall.wait_for(lambda: self._released, timeout=60)
            return True

    @property
    def token_calls(self) -> int:
        return sum(self.calls.values())

    # -- authlib integration --------------------------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        self._store(
            Token(
                request.client.client_id,
                request.user,
                token.get("scope", ""),
                token["access_token"],
                token.get("refresh_token"),
                token["expires_in"],
            )
        )

    def _store(self, token: Token) -> None:
        with self._lock:
            self.by_access[token.access_token] = token
            self.secrets.add(token.access_token)
            if token.refresh_token:
                self.by_refresh[token.refresh_token] = token
                self.secrets.add(token.refresh_token)

    def _generate(  # noqa: PLR0917 - authlib calls it with these positional arguments
        self,
        grant_type: str,
        client: Client,
        user: str | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": "at-" + secrets.token_urlsafe(24),
            "expires_in": self.lifetime,
        }
        scope = client.get_allowed_scope(scope)  # a server grants what the client may have
        if scope:
            token["scope"] = scope
        if include_refresh_token and user is not None:
            token["refresh_token"] = "rt-" + secrets.token_urlsafe(24)
        return token

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request  # type: ignore[no-any-return]

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.base_url,
            "token_endpoint": self.token_url,
            "revocation_endpoint": self.base_url + "/revoke",
            "grant_types_supported": ["client_credentials", "refresh_token", EXCHANGE, JWT_BEARER],
            "token_endpoint_auth_methods_supported": ALL_METHODS,
        }


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        names = set()
        for name, value in headers:
            names.add(name.lower())
            self.send_header(name, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        auth = self.server.auth
        path = urlsplit(self.path).path
        if auth.hold(path):
            self.close_connection = True
            return
        if path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            auth.calls["metadata"] += 0
            self.server.metadata_calls += 1
            self._reply(200, auth.metadata())
        else:
            self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        auth = self.server.auth
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        multi: dict[str, list[str]] = {}
        for key, value in parse_qsl(raw, keep_blank_values=True):
            multi.setdefault(key, []).append(value)
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        path = urlsplit(self.path).path
        request = _Request("POST", auth.base_url + path, self.headers, multi, peer)
        for name in ("client_assertion", "assertion", "client_secret", "subject_token"):
            if name in request.form:
                auth.secrets.add(request.form[name])
        if auth.hold(path):
            self.close_connection = True
            return
        if path == "/token":
            with auth._lock:
                auth.calls[request.form.get("grant_type", "")] += 1
                auth.forms.append(multi)
            if auth.delay:
                time.sleep(auth.delay)
            jkt = None if auth.dpop is None else auth.dpop.check(self.headers, auth.token_url)
            if isinstance(jkt, tuple):
                self._reply(*jkt)
                return
            status, body, headers = auth.create_token_response(request)
            if jkt is not None and status == 200:
                body = auth.dpop.bind(body, jkt)
        elif path == "/revoke":
            status, body, headers = auth.create_endpoint_response("revocation", request)
        else:
            status, body, headers = 404, {"error": "not_found"}, []
        auth.hold(path, answered=True)
        self._reply(status, body, headers)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 makes the kernel drop connections under the concurrency tests.
    request_queue_size = 512
    auth: AuthServer
    metadata_calls: int = 0


class Running:
    """A server running on 127.0.0.1 in a thread; ``stop()`` shuts it down."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], auth: Any, tls: ssl.SSLContext | None = None
    ) -> None:
        self.httpd = _HTTPServer(("127.0.0.1", 0), handler)
        self.httpd.auth = auth
        scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def start(auth: AuthServer, tls: ssl.SSLContext | None = None) -> Running:
    running = Running(_Handler, auth, tls)
    auth.base_url = running.url
    return running
