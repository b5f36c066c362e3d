"""DPoP (RFC 9449) for the test servers, written from the RFC with ``cryptography`` (authlib has
no DPoP): a proof verifier, the token endpoint's gate (``AuthServer.dpop``) and a resource
server on 127.0.0.1 that accepts only DPoP-bound tokens with valid proofs."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

IAT_WINDOW = 60


class Refused(Exception):
    """A proof the server refuses; ``error`` is the RFC 9449 error code."""

    def __init__(self, error: str, why: str) -> None:
        super().__init__(why)
        self.error = error


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC or OKP public JWK."""
    names = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({n: jwk[n] for n in names}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _verify_signature(header: dict[str, Any], signing_input: bytes, signature: bytes) -> None:
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or "d" in jwk:
        raise Refused("invalid_dpop_proof", "no public jwk in the header")
    try:
        if header.get("alg") == "ES256" and jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            x = int.from_bytes(_unb64(jwk["x"]), "big")
            y = int.from_bytes(_unb64(jwk["y"]), "big")
            key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            if len(signature) != 64:
                raise Refused("invalid_dpop_proof", "ES256 signature is not 64 bytes")
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif header.get("alg") == "EdDSA" and jwk.get("crv") == "Ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"])).verify(
                signature, signing_input
            )
        else:
            raise Refused("invalid_dpop_proof", "alg and jwk do not fit")
    except InvalidSignature:
        raise Refused("invalid_dpop_proof", "bad signature") from None


def htu_of(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class Verifier:
    """Checks proofs for one server: signature, typ, htm, htu, iat window, jti replay, ath and
    the server's nonce when it demands one. Keeps every proof it saw in ``proofs``."""

    def __init__(self) -> None:
        self.nonce: str | None = None
        self.jtis: set[str] = set()
        self.proofs: list[str] = []
        self.refusals: list[str] = []
        self._lock = threading.Lock()

    def verify(
        self, proof: str | None, htm: str, url: str, access_token: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The proof's key thumbprint and claims, or ``Refused``."""
        try:
            return self._verify(proof, htm, url, access_token)
        except Refused as exc:
            with self._lock:
                self.refusals.append(exc.error + ": " + str(exc))
            raise

    def _verify(
        self, proof: str | None, htm: str, url: str, access_token: str | None
    ) -> tuple[str, dict[str, Any]]:
        if not proof:
            raise Refused("invalid_dpop_proof", "no DPoP header")
        with self._lock:
            self.proofs.append(proof)
        try:
            head, body, sig = proof.split(".")
            header = json.loads(_unb64(head))
            claims = json.loads(_unb64(body))
            signature = _unb64(sig)
        except ValueError:
            raise Refused("invalid_dpop_proof", "not a JWS") from None
        if header.get("typ") != "dpop+jwt":
            raise Refused("invalid_dpop_proof", "typ")
        _verify_signature(header, f"{head}.{body}".encode(), signature)
        if claims.get("htm") != htm:
            raise Refused("invalid_dpop_proof", "htm")
        if claims.get("htu") != htu_of(url):
            raise Refused("invalid_dpop_proof", "htu")
        iat = claims.get("iat")
        if not isinstance(iat, int) or abs(time.time() - iat) > IAT_WINDOW:
            raise Refused("invalid_dpop_proof", "iat")
        if access_token is not None:
            ath = _b64(hashlib.sha256(access_token.encode()).digest())
            if claims.get("ath") != ath:
                raise Refused("invalid_dpop_proof", "ath")
        jti = claims.get("jti")
        if not isinstance(jti, str) or len(jti) < 12:
            raise Refused("invalid_dpop_proof", "jti")
        with self._lock:
            if jti in self.jtis:
                raise Refused("invalid_dpop_proof", "jti replayed")
            nonce = self.nonce
        if nonce is not None and claims.get("nonce") != nonce:
            raise Refused("use_dpop_nonce", "nonce")
        with self._lock:
            self.jtis.add(jti)
        return thumbprint(header["jwk"]), claims


class TokenGate:
    """The token endpoint's DPoP (set as ``AuthServer.dpop``): a proof is required, and the
    tokens it issues are DPoP tokens bound to the proof's key (``bound``: token -> jkt)."""

    def __init__(self, *, nonce: str | None = None, token_type: str = "DPoP") -> None:
        self.verifier = Verifier()
        self.verifier.nonce = nonce
        self.token_type = token_type
        self.bound: dict[str, str] = {}

    def check(self, headers: Any, url: str) -> tuple[int, Any, list[tuple[str, str]]] | str:
        """The jkt of a valid proof, or the error answer to send."""
        try:
            jkt, _ = self.verifier.verify(headers.get("DPoP"), "POST", url)
        except Refused as exc:
            extra = [] if self.verifier.nonce is None else [("DPoP-Nonce", self.verifier.nonce)]
            return 400, {"error": exc.error, "error_description": str(exc)}, extra
        return jkt

    def bind(self, body: Any, jkt: str) -> Any:
        if isinstance(body, dict) and "access_token" in body:
            body = {**body, "token_type": self.token_type}
            self.bound[body["access_token"]] = jkt
        return body


class ResourceServer:
    """A resource server on 127.0.0.1 that serves ``/api/...`` to DPoP-bound tokens only, and
    ``/hop?to=URL`` as a 302 to ``URL``, and ``/open`` to anyone."""

    def __init__(self, gate: TokenGate) -> None:
        self.gate = gate
        self.verifier = Verifier()
        self.served: list[str] = []
        # (Authorization, DPoP) of every request, as received.
        self.received: list[tuple[str | None, str | None]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ResourceHandler)
        self.httpd.daemon_threads = True
        self.httpd.resource = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def answer(
        self, method: str, path: str, headers: Any
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        self.received.append((headers.get("Authorization"), headers.get("DPoP")))
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme != "DPoP" or not token:
            return (
                401,
                {"error": "no DPoP token"},
                [("WWW-Authenticate", 'DPoP algs="ES256 EdDSA"')],
            )
        try:
            jkt, _ = self.verifier.verify(headers.get("DPoP"), method, self.url + path, token)
        except Refused as exc:
            challenge = [("WWW-Authenticate", f'DPoP error="{exc.error}"')]
            if exc.error == "use_dpop_nonce":
                assert self.verifier.nonce is not None
                challenge.append(("DPoP-Nonce", self.verifier.nonce))
            return 401, {"error": exc.error}, challenge
        if self.gate.bound.get(token) != jkt:
            return 401, {"error": "not bound"}, [("WWW-Authenticate", 'DPoP error="invalid_token"')]
        self.served.append(path)
        return 200, {"ok": True, "path": path}, []


class _ResourceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        resource: ResourceServer = self.server.resource  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", "0"))
        if length:
            self.rfile.read(length)
        parts = urlsplit(self.path)
        if parts.path == "/hop":
            resource.received.append((self.headers.get("Authorization"), self.headers.get("DPoP")))
            status, body, headers = 302, {}, [("Location", parts.query.removeprefix("to="))]
        elif parts.path == "/open":
            resource.received.append((self.headers.get("Authorization"), self.headers.get("DPoP")))
            status, body, headers = 200, {"open": True}, []
        else:
            status, body, headers = resource.answer(self.command, parts.path, self.headers)
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle
