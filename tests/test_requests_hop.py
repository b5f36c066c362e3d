"""requests: the redirect guard reads the next hop exactly as requests does, and fails closed."""

from __future__ import annotations

import json
from urllib.parse import quote, urlparse

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from asapp_auth import AuthPipeline
from asapp_auth._requests_hop import next_hop_origin
from asapp_auth.requests import RequestsAuth
from asapp_auth.testing import FakePlatform

_FROM = "http://127.0.0.1:1000/start#top"
_LOCATIONS = [
    "/v1/next",
    "next?a=b",
    "http://127.0.0.1:1000/x",
    "http://127.0.0.1:2000/x",
    "//127.0.0.1:2000/x",
    "http://LOCALHOST:1000/x#frag",
    "https://127.0.0.1/x",
    "http://[::1]:1000/x",
    "http://127.0.0.1:1000/caf\u00c3\u00a9",  # UTF-8 read as latin-1, as http.client does
    "http://127.0.0.1:1000\\@127.0.0.1:2000/x",
    "http://127.0.0.1:1000@127.0.0.1:2000/x",
    "http://127.0.0.1:1000\t@127.0.0.1:2000/x",
    "http://127.0.0.1:1000%2F@127.0.0.1:2000/x",
    "\\\\127.0.0.1:2000/x",
    "http://127.0.0.1:99999/x",
    "http://127.0.0.1:1000:2000/x",
]


def _redirect(location: str) -> requests.Response:
    response = requests.Response()
    response.status_code = 302
    response.headers = CaseInsensitiveDict({"Location": location})
    response.url = _FROM
    response.request = requests.Request("GET", _FROM).prepare()
    return response


def _requests_own_hop(response: requests.Response) -> tuple[str, str, int] | None:
    """Where requests itself would connect for the hop: its resolve_redirects, then urlparse."""
    session = requests.Session()
    try:
        hop = next(session.resolve_redirects(response, response.request, yield_requests=True))
        parsed = urlparse(hop.url)
        scheme = parsed.scheme.lower()
        return (scheme, parsed.hostname or "", parsed.port or {"http": 80}.get(scheme, 443))
    except ValueError:  # requests refuses the Location: nothing is sent
        return None


@pytest.mark.parametrize("location", _LOCATIONS)
def test_the_hop_origin_is_requests_own_or_none(location: str) -> None:
    """For every Location the guard names the origin requests connects to, or none at all."""
    found = next_hop_origin(_redirect(location))
    assert found is None or found == _requests_own_hop(_redirect(location))


@pytest.mark.parametrize("location", _LOCATIONS[:9])
def test_an_ordinary_location_gets_its_origin(location: str) -> None:
    """An ordinary Location is not refused: the guard names requests' own next origin."""
    assert next_hop_origin(_redirect(location)) == _requests_own_hop(_redirect(location))


@pytest.mark.parametrize("form", ["userinfo", "backslash-path"])
def test_an_ambiguous_location_back_to_the_platform_carries_no_context(
    platform: FakePlatform, form: str
) -> None:
    """A Location with userinfo or a backslash counts as another origin even when requests
    sends the hop back to the platform: the hop gets no part of the context."""
    pipeline = AuthPipeline(origins=[platform.origin])
    token = platform.issue_token("alice")
    context = {"Auth": {"Token": token, "Headers": {"X-Session": "hdr-s3cr3t"}}}
    pipeline.load("alice", lambda needs_refresh: context)
    netloc = platform.origin.split("//", 1)[1]
    hop = {"userinfo": f"http://me@{netloc}/public", "backslash-path": "/\\public"}[form]
    with requests.Session() as session:
        session.auth = RequestsAuth(pipeline)
        session.get(f"{platform.url}/redirect?to={quote(hop, safe='')}")
    first, second = platform.received
    assert first.headers["X-Session"] == "hdr-s3cr3t"
    sent = json.dumps(dict(second.headers))
    assert token not in sent
    assert "hdr-s3cr3t" not in sent
