"""What a TLS failure at an endpoint means for the app: a message naming the settings that decide
the failing side, or ``None`` for a failure that retrying may fix."""

from __future__ import annotations

import ssl

from ._settings import OAuth2Settings

__all__ = ["tls_problem"]

# TLS alerts by which a server refuses the client's certificate, or the lack of one.
_CLIENT_CERT_ALERTS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    }
)
# TLS failures that may be transient (a dropped connection), left to the retry logic.
_TRANSIENT_SSL = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` under an httpx exception (httpx -> httpcore -> ssl), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def tls_problem(exc: BaseException, what: str, endpoint: str, s: OAuth2Settings) -> str | None:
    """A message for a TLS failure that retrying cannot fix; ``None`` for any other failure.
    It names the settings that decide the failing side: ``ssl_context`` when one was given."""
    cause = _ssl_cause(exc)
    if cause is None or isinstance(cause, _TRANSIENT_SSL):
        return None
    # parse_settings refuses verify and cert beside an ssl_context of the app's own.
    own = s.ssl_context is not None and s.cert is None and isinstance(s.verify, bool)
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or cause.reason or "certificate verify failed"
        fix = (
            "load the CA that issued it into 'ssl_context' (load_verify_locations)"
            if own
            else "set 'verify' to the CA bundle that issued it"
        )
        return (
            f"plugin 'oauth2': the server certificate of the {what} {endpoint} could not be "
            f"verified ({detail}); {fix}, or fix the server's certificate"
        )
    reason = str(cause.reason or type(cause).__name__)
    shown = reason.lower().replace("_", " ")
    if reason in _CLIENT_CERT_ALERTS:
        if own:
            return (
                f"plugin 'oauth2': the {what} {endpoint} refused or missed the client "
                f"certificate of the 'ssl_context' setting in the TLS handshake ({shown}); load "
                "one issued by a CA the server trusts, for this client (load_cert_chain)"
            )
        if s.cert is None:
            return (
                f"plugin 'oauth2': the {what} {endpoint} requires a client certificate in the "
                f"TLS handshake ({shown}) and none is configured; set 'cert'"
            )
        return (
            f"plugin 'oauth2': the {what} {endpoint} refused the client certificate of the "
            f"'cert' setting in the TLS handshake ({shown}); use a certificate issued by a CA "
            "the server trusts, for this client"
        )
    settings = "'ssl_context' setting" if own else "'verify' and 'cert' settings"
    return (
        f"plugin 'oauth2': the TLS handshake with the {what} {endpoint} failed ({shown}); check "
        f"the URL and the {settings}"
    )
