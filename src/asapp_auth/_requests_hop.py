"""Where requests sends the hop after a redirect, read exactly as requests reads it.

``Session.resolve_redirects`` turns the Location into the next URL (latin-1 read back as
UTF-8, a scheme-relative ``//`` given the response's scheme, the fragment carried over,
``requote_uri``, ``urljoin``), and ``HTTPAdapter`` connects to the host and port that urllib's
``urlparse`` reads from it. Any other parser can read another host from the same Location (urllib3
ends an authority at a backslash, urllib at the ``@`` after it), so the guard judges the hop
from requests' own reading and refuses to name an origin when anything is ambiguous.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlparse

import requests
from requests.utils import requote_uri
from urllib3.util import parse_url

from .origins import _DEFAULT_PORTS, Origin

# A backslash, a control character or a space: no honest Location needs one, and parsers
# disagree about them (urllib drops tabs and newlines, urllib3 and browsers end the
# authority at a backslash, urllib does not).
_ODD = re.compile(r"[\x00-\x20\x7f\\]")


def next_hop_origin(response: requests.Response) -> Origin | None:
    """The (scheme, host, port) requests sends the hop after ``response`` to, or ``None`` when
    the Location is odd (userinfo, a backslash, control characters, a port or host that does
    not parse, parsers that disagree): the caller treats ``None`` as another origin."""
    try:
        location = response.headers["location"].encode("latin1").decode("utf8")
        if _ODD.search(location):
            return None
        if location.startswith("//"):
            location = f"{urlparse(response.url).scheme}:{location}"
        parsed = urlparse(location)
        fragment = urlparse(response.request.url or "").fragment
        if parsed.fragment == "" and fragment:
            parsed = parsed._replace(fragment=fragment)
        url = parsed.geturl()
        url = requote_uri(url) if parsed.netloc else urljoin(response.url, requote_uri(url))
        sent = urlparse(url)  # what HTTPAdapter connects to
        scheme, host = sent.scheme.lower(), sent.hostname or ""
        origin = (scheme, host, sent.port or _DEFAULT_PORTS.get(scheme, 0))
        other = parse_url(url)
        other_scheme = (other.scheme or "").lower()
        other_host = (other.host or "").lower().strip("[]")
        seconded = (other_scheme, other_host, other.port or _DEFAULT_PORTS.get(other_scheme, 0))
    except ValueError:  # also UnicodeError, requests' InvalidURL and urllib3's parse errors
        return None
    if "@" in sent.netloc or not host or "%" in host or not host.isascii() or seconded != origin:
        return None
    return origin
