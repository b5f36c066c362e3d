"""Authorization server metadata from an issuer URL (RFC 8414, then OpenID Connect discovery).

Fetched on first need, once, and kept for the plugin's life; a failure is not kept, so the next
request tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from asapp_auth.errors import ConfigurationError, ProviderTimeoutError

from ._setting_checks import check_url
from ._transport import Transport
from .errors import DiscoveryError, OAuth2Error, TokenResponseError

__all__ = ["Discovery", "metadata_urls"]


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be: RFC 8414 section 3.1 (well-known path inserted before
    the issuer's path), then OpenID Connect discovery (appended after it)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", "")
    )
    oidc = urlunsplit(
        (parts.scheme, parts.netloc, path + "/.well-known/openid-configuration", "", "")
    )
    return [rfc8414, oidc]


class Discovery:
    def __init__(self, issuer: str, transport: Transport, *, allow_http: bool) -> None:
        self.issuer = issuer
        self._transport = transport
        self._allow_http = allow_http
        self._lock = threading.Lock()
        self._metadata: Mapping[str, Any] | None = None
        self.fetches = 0

    def metadata(self, deadline: float | None = None) -> Mapping[str, Any]:
        """The issuer's metadata, fetched once; waiting and fetching end by ``deadline``."""
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=wait):
            raise ProviderTimeoutError(
                f"plugin 'oauth2': the metadata of issuer {self.issuer} was still being fetched "
                "for another request when the time the pipeline gives the plugin "
                "(provider_timeout) ran out; the next request asks again",
                plugin="oauth2",
            )
        try:
            if self._metadata is None:
                self._metadata = self._fetch(deadline)
            return self._metadata
        finally:
            self._lock.release()

    def endpoint(self, name: str, *, required: bool, deadline: float | None = None) -> str | None:
        """A validated endpoint URL from the metadata, e.g. ``token_endpoint``."""
        value = self.metadata(deadline).get(name)
        if value is None:
            if required:
                raise DiscoveryError(
                    f"plugin 'oauth2': the metadata of issuer {self.issuer} has no {name}; "
                    f"set {name!r} in the plugin settings",
                    issuer=self.issuer,
                )
            return None
        try:
            return check_url(name, value, allow_http=self._allow_http)
        except ConfigurationError as exc:
            raise DiscoveryError(
                f"plugin 'oauth2': the metadata of issuer {self.issuer} gives an unusable "
                f"{name}: {exc}",
                issuer=self.issuer,
            ) from None

    def _fetch(self, deadline: float | None) -> Mapping[str, Any]:
        problems: list[str] = []
        for url in metadata_urls(self.issuer):
            self.fetches += 1
            try:
                result = self._transport.request(
                    "GET", url, what="metadata endpoint", deadline=deadline
                )
            except (OAuth2Error, TokenResponseError) as exc:
                problems.append(f"{url}: HTTP {getattr(exc, 'status_code', None)}")
                continue
            except ProviderTimeoutError:
                raise
            except Exception as exc:
                raise DiscoveryError(
                    f"plugin 'oauth2': the metadata of issuer {self.issuer} could not be fetched "
                    f"({type(exc).__name__}: {exc})",
                    issuer=self.issuer,
                ) from exc
            issuer = result.data.get("issuer")
            # RFC 8414 section 3.3: the metadata must be for the issuer that was asked for.
            if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer.rstrip("/"):
                raise DiscoveryError(
                    f"plugin 'oauth2': the metadata at {url} is for issuer {issuer!r}, not "
                    f"{self.issuer!r} (RFC 8414 section 3.3); check the issuer setting",
                    issuer=self.issuer,
                )
            return result.data
        raise DiscoveryError(
            f"plugin 'oauth2': no metadata found for issuer {self.issuer} "
            f"({'; '.join(problems)}); check the issuer, or set token_endpoint",
            issuer=self.issuer,
        )
