"""The TLS settings of the plugin's own HTTP client: ``verify`` (a CA bundle or directory),
``cert`` (a client certificate for ``tls_client_auth``), ``trust_env``, or an ``ssl_context`` of
the app's own that replaces them. Files are loaded when the plugin is configured, so that a bad
one is a ``ConfigurationError`` naming its setting."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from asapp_auth.paths import setting_path

from ._setting_checks import fail

__all__ = ["cert_setting", "own_ssl_context", "ssl_context_for", "verify_setting"]


def verify_setting(value: object) -> bool | str:
    """``verify``: true, false, or a CA bundle's path (beside the configuration file)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return setting_path(value)  # beside the configuration file that names it, if any
    raise fail("verify", "must be true, false or the path of a CA bundle")


def cert_setting(value: object) -> str | tuple[str, str] | None:
    """``cert``: a PEM path holding certificate and key, or a [certificate, key] pair."""
    if value is None:
        return None
    if isinstance(value, str) and value:
        return setting_path(value)
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, str) and v for v in value)
    ):
        return (setting_path(value[0]), setting_path(value[1]))
    raise fail("cert", "must be a PEM path, or a [certificate path, key path] pair")


def own_ssl_context(raw: Mapping[str, Any]) -> ssl.SSLContext | None:
    """An ``ssl.SSLContext`` given in code, used as it is: then it alone decides what is trusted
    and which client certificate is shown, so ``verify`` and ``cert`` may not be given too."""
    context = raw.get("ssl_context")
    if context is None:
        return None
    if not isinstance(context, ssl.SSLContext):
        raise fail("ssl_context", f"must be an ssl.SSLContext, not {type(context).__name__}")
    given = [name for name in ("verify", "cert") if raw.get(name) is not None]
    if given:
        raise fail(
            "ssl_context",
            f"was given with {given}, which it replaces; load the CA and the client certificate "
            "into the context (load_verify_locations, load_cert_chain), or leave ssl_context out",
        )
    return context


def ssl_context_for(
    verify: bool | str, cert: str | tuple[str, str] | None, trust_env: bool
) -> ssl.SSLContext | None:
    """The TLS context for a CA path or a client certificate, loaded now so that a bad file is a
    configuration error; ``None`` leaves httpx's default (``verify`` True or False, no cert)."""
    if isinstance(verify, bool) and cert is None:
        return None
    if isinstance(verify, str):
        try:
            if os.path.isdir(verify):
                context = ssl.create_default_context(capath=verify)
            else:
                context = ssl.create_default_context(cafile=verify)
        except (OSError, ValueError) as exc:
            raise fail(
                "verify",
                f"names {verify!r}, which is not a readable PEM CA bundle or directory "
                f"({type(exc).__name__}); give the CA that issued the server's certificate",
            ) from None
    else:
        context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        files = [certfile] if keyfile is None else [certfile, keyfile]
        try:
            # The password callback stops OpenSSL from prompting on a terminal for an
            # encrypted key; such a key then fails to load like any other bad key.
            context.load_cert_chain(certfile, keyfile, password=lambda: b"")
        except (OSError, ValueError) as exc:
            raise fail(
                "cert",
                f"names {files!r}, which could not be loaded as a PEM certificate and its "
                f"unencrypted private key ({type(exc).__name__}); check the paths, and that the "
                "key belongs to the certificate",
            ) from None
    return context
