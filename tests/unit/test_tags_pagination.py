"""Tag listing follows ``Link`` pagination (RFC 5988, as the distribution spec describes).

The docker-registry 2.8 package ignores ``n=`` on ``/tags/list``, so no real registry here
paginates; a scripted in-process transport stands in for one that does.
"""

from __future__ import annotations

import httpx
import pytest

from ecr_mirror.errors import RegistryError
from ecr_mirror.reference import parse_reference
from ecr_mirror.registry import FAST, RegistryClient

TAGS = [f"1.{i}" for i in range(7)]


def paginating_registry(seen: list[str], *, loop: bool = False) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        n = int(request.url.params.get("n", "100"))
        last = request.url.params.get("last")
        start = 0 if last is None else TAGS.index(last) + 1
        page = TAGS[start : start + n]
        headers = {}
        if start + n < len(TAGS):
            nxt = "/v2/app/tags/list?n=%d&last=%s" % (n, page[-1] if not loop else TAGS[0])
            headers["Link"] = f'<{nxt}>; rel="next"'
        return httpx.Response(200, json={"name": "app", "tags": page}, headers=headers)

    return httpx.MockTransport(handle)


def test_follows_link_pages():
    seen: list[str] = []
    client = RegistryClient(httpx.Client(transport=paginating_registry(seen)), retry=FAST)
    tags = client.tags_list(parse_reference("registry.example/app"), page_size=3)
    assert tags == TAGS
    assert len(seen) == 3
    assert seen[0] == "https://registry.example/v2/app/tags/list?n=3"
    assert "last=1.2" in seen[1] and "last=1.5" in seen[2]


def test_pagination_loop_is_an_error():
    seen: list[str] = []
    client = RegistryClient(httpx.Client(transport=paginating_registry(seen, loop=True)), retry=FAST)
    with pytest.raises(RegistryError, match="loops"):
        client.tags_list(parse_reference("registry.example/app"), page_size=3)
