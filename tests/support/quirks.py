"""Registry behaviours distribution 2.8 does not show, as :class:`RegistryProxy` extensions.

Optional protocol behaviour a client must not take for granted. What the proxy covers with faults
(``times=None``: every matching request):

- manifest HEAD 404 while GET works: ``add_fault("HEAD", "/manifests/", "status", status=404, times=None)``
- HEAD without Content-Length: ``add_fault("HEAD", "/manifests/", "drop_headers", drop=["Content-Length"])``
- HEAD without Docker-Content-Digest: the same with ``drop=["Docker-Content-Digest"]``
- PUT without Location: ``add_fault("PUT", "", "drop_headers", drop=["Location"], times=None)``
- manifest PUT without OCI-Subject: distribution never sends it; behind
  :class:`tests.support.ecr.ReferrersProxy` or the ECR stand-in: ``add_fault("PUT", "/manifests/",
  "drop_headers", drop=["OCI-Subject"])`` (drop_headers also applies to answers those fronts make)

And here: :class:`TagPager`, a registry that pages its tag lists (distribution 2.8 ignores ``n`` and always
answers the whole list), with or without ``Link`` headers.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlencode

from .proxy import RegistryProxy, Reply, RequestRecord

__all__ = ["TagPager"]

_TAGS_PATH = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


class TagPager:
    """Answer ``GET /v2/<name>/tags/list`` in pages, as distribution-spec "Listing Tags" allows.

    Tags are sorted (lexically, as the spec asks); a page holds at most ``page_size`` tags, fewer if the
    client asks ``n`` smaller; ``last=<tag>`` starts after that tag. With ``link=True`` a page that is not
    the last carries ``Link: </v2/<name>/tags/list?n=<n>&last=<tag>>; rel="next"``; with ``link=False``
    it does not (the client must ask again with ``last=`` when a page came back full).
    The whole list is read from upstream (not recorded by the proxy) on each request.

        pager = TagPager(page_size=2, link=False)
        front = proxy_factory(registry, extensions=[pager])
        assert front.count("GET", "/tags/list") == 3   # after a client listed 5 tags
    """

    def __init__(self, page_size: int = 100, *, link: bool = True) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.page_size = page_size
        self.link = link

    def on_request(self, proxy: RegistryProxy, record: RequestRecord) -> Reply | None:
        match = _TAGS_PATH.match(record.path)
        if match is None or record.method not in ("GET", "HEAD"):
            return None
        name = match.group("name")
        headers = {} if proxy.bearer or not record.authorization else {"Authorization": record.authorization}
        status, upstream_headers, body = proxy.fetch_upstream("GET", f"/v2/{name}/tags/list", headers)
        if status != 200:
            content_type = upstream_headers.get("content-type", "application/json")
            return Reply(status, [("Content-Type", content_type)], body)
        tags = sorted(json.loads(body).get("tags") or [])
        query = parse_qs(record.query)
        try:
            n = min(int(query.get("n", [self.page_size])[0]), self.page_size)
        except ValueError:
            n = self.page_size
        last = query.get("last", [None])[0]
        if last is not None:
            tags = [tag for tag in tags if tag > last]
        page = tags[: max(n, 0)]
        headers_out = [("Content-Type", "application/json")]
        if self.link and page and len(tags) > len(page):
            target = f"/v2/{name}/tags/list?{urlencode({'n': n, 'last': page[-1]})}"
            headers_out.append(("Link", f'<{target}>; rel="next"'))
        return Reply(200, headers_out, json.dumps({"name": name, "tags": page}).encode())
