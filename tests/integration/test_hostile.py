"""Hostile or broken upstreams: each gets a clear error for that image, nothing is written.

The upstream here is a purpose-built HTTP server (stdlib ``http.server`` on a free loopback port)
that serves exactly the bytes and headers a test gives it, lies included. The destination is a
real ``docker-registry`` behind a counting proxy, so "nothing written" is checked as "no
POST/PUT/PATCH/DELETE ever reached the destination" (or, where the failure can only show up
while a blob streams, "no manifest written and the bad blob absent").

Redirects to link-local/metadata addresses and token realms on other hosts are tested without
any socket in ``tests/unit/test_redirect_safety.py``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ecr_mirror import manifest as mf
from ecr_mirror.errors import DigestMismatchError, ManifestError, MirrorError, RegistryError, UnsafeRedirectError
from tests.integration.helpers import copier, make_client, ref
from tests.support import images as im

MiB = 1 << 20


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- the hostile server

Responder = Callable[["_Handler"], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        responder = self.server.routes.get((self.command, path)) or self.server.routes.get(("*", path))
        try:
            if responder is None:
                self.send(404, {"Content-Type": "application/json"},
                          b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}')
            else:
                responder(self)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up on a hostile body: good
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def send(self, status: int, headers: dict[str, str], body: bytes | Iterable[bytes] = b"", *,
             length: int | None | str = "auto", chunked: bool = False) -> None:
        """``length``: "auto" (the real length), an int (maybe a lie), or None (no header: close-delimited)."""
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length == "auto":
            assert isinstance(body, bytes)
            self.send_header("Content-Length", str(len(body)))
        elif length is not None:
            self.send_header("Content-Length", str(length))
        if chunked or length != "auto":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        pieces = [body] if isinstance(body, bytes) else body
        for piece in pieces:
            if chunked:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[tuple[str, str], Responder] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()


class HostileRegistry:
    """Serves what it is told, under ``/v2/<repo>/...``; ``host`` is ``127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.server = _Server()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self.server.lock:
            return list(self.server.requests)

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and fragment in p)

    def route(self, method: str, path: str, responder: Responder) -> None:
        self.server.routes[(method, path)] = responder

    def manifest(self, repo: str, reference: str, body: bytes, content_type: str, *, digest: str | None = None,
                 head_digest: str | None = None, **send: Any) -> None:
        """HEAD and GET ``/v2/<repo>/manifests/<reference>``. ``digest``: the Docker-Content-Digest on GET
        (default: the truth); ``head_digest``: the one on HEAD (default: same)."""
        get_digest = digest or sha(body)
        head = head_digest or get_digest
        path = f"/v2/{repo}/manifests/{reference}"
        self.route("HEAD", path, lambda h: h.send(200, {"Content-Type": content_type, "Docker-Content-Digest": head,
                                                        "Content-Length": str(len(body))}, length=None))
        self.route("GET", path, lambda h: h.send(200, {"Content-Type": content_type, "Docker-Content-Digest": get_digest},
                                                 body, **send))

    def tagged(self, repo: str, tag: str, body: bytes, content_type: str, **kwargs: Any) -> str:
        """The manifest by tag (HEAD) and by its digest (GET), as the copier asks; returns the digest."""
        digest = kwargs.pop("head_digest", None) or sha(body)
        self.manifest(repo, tag, body, content_type, head_digest=digest)
        self.manifest(repo, digest, body, content_type, **kwargs)
        return digest

    def blob(self, repo: str, digest: str, body: bytes | Iterable[bytes], **send: Any) -> None:
        self.route("GET", f"/v2/{repo}/blobs/{digest}",
                   lambda h: h.send(200, {"Content-Type": "application/octet-stream"}, body, **send))

    def image(self, repo: str, image: im.Image) -> None:
        """Serve an image's manifest by digest and its blobs honestly."""
        self.manifest(repo, image.digest, image.manifest, image.media_type)
        for digest in image.blob_digests:
            self.blob(repo, digest, b"".join(image.blob_chunks(digest)))


@pytest.fixture
def hostile():
    server = HostileRegistry()
    yield server
    server.close()


@pytest.fixture
def dest(registry, proxy_factory):
    """A real destination registry behind a counting proxy."""
    return proxy_factory(registry)


def writes(proxy) -> list[tuple[str, str]]:
    return [(r.method, r.target) for r in proxy.records if r.method not in ("GET", "HEAD")]


def copy_fails(hostile: HostileRegistry, dest, expected: type[MirrorError] = MirrorError, *, source: str = "app:v1",
               client=None) -> MirrorError:
    started = time.monotonic()
    with copier(client) as c, pytest.raises(expected) as caught:
        c.copy(ref(hostile.host, source), ref(dest.host, "mirror/app:v1"))
    assert time.monotonic() - started < 15, "a hostile upstream must not make the copy hang"
    error = caught.value
    assert "\n" not in str(error) and len(str(error)) < 1000
    return error


def assert_nothing_written(dest) -> None:
    assert writes(dest) == []
    assert im.list_tags(dest, "mirror/app") == []


def manifest_doc(extra: dict | None = None, media_type: str = mf.OCI_MANIFEST) -> dict:
    image = im.build_image("linux/amd64", seed=99, layers=1)
    doc = image.json
    doc["mediaType"] = media_type
    doc.update(extra or {})
    return doc


# ---------------------------------------------------------------- oversized manifests


def _padded_manifest(size: int) -> bytes:
    doc = manifest_doc()
    head = json.dumps(doc)[:-1].encode() + b', "padding": "'
    return head + b"a" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize(
    "mode",
    ["chunked-no-length", "content-length-honest", "content-length-lies-small", "content-length-lies-huge", "close-delimited"],
)
def test_manifest_over_4_mib_is_refused_while_reading(hostile, dest, mode):
    body = _padded_manifest(5 * MiB)
    digest = sha(body)
    send: dict[str, Any] = {
        "chunked-no-length": {"chunked": True, "body": [body[i:i + 65536] for i in range(0, len(body), 65536)]},
        "content-length-honest": {},
        "content-length-lies-small": {"length": 1024},  # claims 1 KiB, sends 5 MiB
        "content-length-lies-huge": {"length": 100 << 30, "body": iter(lambda: b"a" * 65536, None)},  # 100 GiB, endless
        "close-delimited": {"length": None},
    }[mode]
    hostile.manifest("app", "v1", body, mf.OCI_MANIFEST)
    served = send.pop("body", body)
    hostile.route("GET", f"/v2/app/manifests/{digest}",
                  lambda h: h.send(200, {"Content-Type": mf.OCI_MANIFEST, "Docker-Content-Digest": digest}, served, **send))
    error = copy_fails(hostile, dest, ManifestError if mode != "content-length-lies-small" else DigestMismatchError)
    assert f"GET manifest {hostile.host}/app@{digest}" in str(error)
    if mode != "content-length-lies-small":
        assert "larger than 4194304 bytes" in str(error)
    else:  # the client believed the small length: 1 KiB that are not the manifest asked for
        assert "hash to" in str(error)
    assert hostile.count("GET", "/manifests/") == 1  # refused, not retried
    assert_nothing_written(dest)


# ---------------------------------------------------------------- malformed JSON and lying digests


@pytest.mark.parametrize("depth", [100, 200_000], ids=["deeper-than-64", "deeper-than-python"])
def test_deeply_nested_json_manifest(hostile, dest, depth):
    doc = json.dumps(manifest_doc())[:-1].encode()
    body = doc + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    hostile.tagged("app", "v1", body, mf.OCI_MANIFEST)
    error = copy_fails(hostile, dest, ManifestError)
    assert "nested too deeply" in str(error) and f"{hostile.host}/app@" in str(error)
    assert_nothing_written(dest)


def test_manifest_bytes_not_matching_the_digest_asked_for(hostile, dest):
    real = json.dumps(manifest_doc()).encode()
    other = json.dumps(manifest_doc({"annotations": {"swapped": "yes"}})).encode()
    digest = hostile.tagged("app", "v1", real, mf.OCI_MANIFEST)
    hostile.manifest("app", digest, other, mf.OCI_MANIFEST, digest=digest)  # serves other bytes, claims `digest`
    error = copy_fails(hostile, dest, DigestMismatchError)
    assert f"hash to {sha(other)}, expected {digest}" in str(error)
    assert_nothing_written(dest)


def test_docker_content_digest_header_disagreeing_with_the_bytes(hostile, dest):
    body = json.dumps(manifest_doc()).encode()
    liar = sha(b"something else")
    hostile.tagged("app", "v1", body, mf.OCI_MANIFEST, digest=liar)  # right bytes, wrong header on GET
    error = copy_fails(hostile, dest, DigestMismatchError)
    assert f"Docker-Content-Digest says {liar}" in str(error)
    assert_nothing_written(dest)


def test_head_reporting_another_digest_than_the_one_asked_for(hostile, dest):
    body = json.dumps(manifest_doc()).encode()
    digest = sha(body)
    hostile.manifest("app", digest, body, mf.OCI_MANIFEST, head_digest=sha(b"not it"))
    error = copy_fails(hostile, dest, DigestMismatchError, source=f"app@{digest}")
    assert f"registry reports {sha(b'not it')} for {digest}" in str(error)
    assert_nothing_written(dest)


def test_head_without_digest_falls_back_to_a_verified_get(hostile, dest):
    body = json.dumps(manifest_doc()).encode()
    hostile.route("HEAD", "/v2/app/manifests/v1", lambda h: h.send(200, {"Content-Type": mf.OCI_MANIFEST}, b"", length=0))
    hostile.route("GET", "/v2/app/manifests/v1",
                  lambda h: h.send(200, {"Content-Type": mf.OCI_MANIFEST, "Docker-Content-Digest": sha(b"x")}, body))
    error = copy_fails(hostile, dest, DigestMismatchError)
    assert "Docker-Content-Digest says" in str(error)
    assert_nothing_written(dest)


# ---------------------------------------------------------------- cycles and huge indexes


def _index(children: list[dict], media_type: str = mf.OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": children}, indent=2).encode()


def test_index_that_lists_itself(hostile, dest):
    """A content-addressed index cannot contain its own digest; an upstream can still *serve* the
    index again when asked for its child. The bytes give it away; nothing is followed in a loop."""
    child_digest = sha(b"child")
    index = _index([{"mediaType": mf.OCI_INDEX, "digest": child_digest, "size": 300}])
    hostile.tagged("app", "v1", index, mf.OCI_INDEX)
    hostile.manifest("app", child_digest, index, mf.OCI_INDEX, digest=child_digest)  # "the child is me"
    error = copy_fails(hostile, dest, DigestMismatchError)
    assert child_digest in str(error)
    assert hostile.count("GET", "/manifests/") == 2
    assert_nothing_written(dest)


def test_child_that_lists_the_index(hostile, dest):
    """index -> child (a real index, right digest) -> 'the parent' again: the nested index is followed
    (image-index.md), and the loop dies at the first step back, since bytes give their digest away."""
    loop_digest = sha(b"points back at the parent")
    child = _index([{"mediaType": mf.OCI_INDEX, "digest": loop_digest, "size": 500}])
    parent = _index([{"mediaType": mf.OCI_INDEX, "digest": sha(child), "size": len(child),
                      "platform": {"os": "linux", "architecture": "amd64"}}])
    hostile.tagged("app", "v1", parent, mf.OCI_INDEX)
    hostile.manifest("app", sha(child), child, mf.OCI_INDEX)
    hostile.manifest("app", loop_digest, parent, mf.OCI_INDEX, digest=loop_digest)
    error = copy_fails(hostile, dest, DigestMismatchError)
    assert f"hash to {sha(parent)}, expected {loop_digest}" in str(error)
    assert hostile.count("GET", loop_digest) == 1
    assert_nothing_written(dest)


def test_indexes_nested_deeper_than_the_limit(hostile, dest):
    """A chain of real indexes, each listing the next: followed to MAX_INDEX_DEPTH, then refused,
    before anything is written."""
    image = json.dumps(manifest_doc()).encode()
    levels = [_index([{"mediaType": mf.OCI_MANIFEST, "digest": sha(image), "size": len(image)}])]  # the deepest
    while len(levels) < mf.MAX_INDEX_DEPTH + 1:
        levels.append(_index([{"mediaType": mf.OCI_INDEX, "digest": sha(levels[-1]), "size": len(levels[-1])}]))
    top = levels[-1]
    hostile.tagged("app", "v1", top, mf.OCI_INDEX)
    for body in levels[:-1]:
        hostile.manifest("app", sha(body), body, mf.OCI_INDEX)
    error = copy_fails(hostile, dest, ManifestError)
    assert f"nests indexes more than {mf.MAX_INDEX_DEPTH} deep" in str(error)
    assert hostile.count("GET", sha(levels[0])) == 1  # the deepest index: fetched, refused, nothing under it
    assert hostile.count("GET", sha(image)) == 0
    assert_nothing_written(dest)


def test_index_with_thousands_of_children(hostile, dest):
    children = [{"mediaType": mf.OCI_MANIFEST, "digest": sha(str(i).encode()), "size": 500,
                 "platform": {"os": "linux", "architecture": f"arch{i}"}} for i in range(5000)]
    index = _index(children)
    assert len(index) < 4 * MiB
    hostile.tagged("app", "v1", index, mf.OCI_INDEX)
    error = copy_fails(hostile, dest, ManifestError)
    assert "lists 5000 manifests, over the limit of 1024" in str(error)
    assert hostile.count("GET", "/manifests/") == 1  # not one child fetched
    assert_nothing_written(dest)


# ---------------------------------------------------------------- blobs that lie about their size


@pytest.mark.parametrize("lie", ["larger", "smaller"])
def test_blob_that_does_not_match_its_descriptor_size(hostile, dest, lie):
    image = im.build_image("linux/amd64", seed=41, layers=1, layer_size=300_000)
    layer = image.layers[0]
    doc = image.json
    doc["layers"][0]["size"] = 1000 if lie == "larger" else layer.size + 5000  # the served blob is larger / smaller
    body = json.dumps(doc, indent=2).encode()
    hostile.tagged("app", "v1", body, mf.OCI_MANIFEST)
    hostile.blob("app", image.config_digest, image.config_bytes)
    hostile.blob("app", layer.digest, [layer.data[i:i + 65536] for i in range(0, len(layer.data), 65536)],
                 length=len(layer.data))
    error = copy_fails(hostile, dest, DigestMismatchError)
    assert layer.digest in str(error)
    assert ("larger than its descriptor's 1000 bytes" if lie == "larger" else f"ended after {layer.size} of") in str(error)
    assert not any("/manifests/" in target for _, target in writes(dest))  # no manifest, no tag
    assert not im.blob_exists(dest, "mirror/app", layer.digest)  # the bad blob was never committed
    assert im.list_tags(dest, "mirror/app") == []


# ---------------------------------------------------------------- wrong Content-Type


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (mf.OCI_MANIFEST, "index", "disagrees with the manifest's mediaType"),  # an index served as a manifest
        (mf.DOCKER_LIST, "manifest", "disagrees with the manifest's mediaType"),
        ("text/html; charset=utf-8", "html", "not valid JSON"),
        (mf.DOCKER_SCHEMA1_SIGNED, "manifest-no-media-type", "schema 1"),
        ("application/octet-stream", "no-media-type-shapeless", "cannot tell what kind of manifest"),
    ],
)
def test_wrong_content_type(hostile, dest, content_type, body, message):
    bodies = {
        "index": _index([{"mediaType": mf.OCI_MANIFEST, "digest": sha(b"c"), "size": 10}]),
        "manifest": json.dumps(manifest_doc()).encode(),
        "html": b"<html><body>rate limited, try later</body></html>",
        "manifest-no-media-type": json.dumps({k: v for k, v in manifest_doc().items() if k != "mediaType"}).encode(),
        "no-media-type-shapeless": json.dumps({"schemaVersion": 2, "blobs": []}).encode(),
    }
    hostile.tagged("app", "v1", bodies[body], content_type)
    error = copy_fails(hostile, dest, ManifestError)
    assert message in str(error) and f"{hostile.host}/app@" in str(error)
    assert_nothing_written(dest)


# ---------------------------------------------------------------- redirects


@pytest.mark.parametrize("shape", ["self", "ping-pong"])
def test_redirect_loop(hostile, dest, shape):
    path = "/v2/app/manifests/v1"
    other = "/v2/app/manifests/v1-elsewhere"
    if shape == "self":
        hostile.route("*", path, lambda h: h.send(302, {"Location": path}))
    else:
        hostile.route("*", path, lambda h: h.send(302, {"Location": f"http://{hostile.host}{other}"}))
        hostile.route("*", other, lambda h: h.send(307, {"Location": path}))
    error = copy_fails(hostile, dest, UnsafeRedirectError)
    assert "more than 5 redirects" in str(error) and f"{hostile.host}/app:v1" in str(error)
    assert len(hostile.requests) == 6  # bounded, and not retried
    assert_nothing_written(dest)


@pytest.fixture
def tripwire():
    """A listening socket that records any connection made to it (there must be none)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.05)
    yield sock
    sock.close()


def _accepted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except (TimeoutError, OSError):
        return False
    conn.close()
    return True


@pytest.mark.parametrize("where", ["manifest", "blob"])
@pytest.mark.parametrize("scheme", ["file", "ftp", "gopher", "data"])
def test_redirect_to_another_scheme(hostile, dest, tripwire, where, scheme):
    port = tripwire.getsockname()[1]
    location = {"file": "file:///etc/passwd", "ftp": f"ftp://127.0.0.1:{port}/pub/blob",
                "gopher": f"gopher://127.0.0.1:{port}/", "data": "data:application/octet-stream;base64,AAAA"}[scheme]
    image = im.build_image("linux/amd64", seed=42, layers=1)
    if where == "manifest":
        hostile.route("*", "/v2/app/manifests/v1", lambda h: h.send(302, {"Location": location}))
    else:
        hostile.tagged("app", "v1", image.manifest, image.media_type)
        hostile.blob("app", image.config_digest, image.config_bytes)
        hostile.route("GET", f"/v2/app/blobs/{image.layers[0].digest}", lambda h: h.send(302, {"Location": location}))
    error = copy_fails(hostile, dest, UnsafeRedirectError)
    assert f"{hostile.host}/app" in str(error)
    assert not _accepted(tripwire)  # no connection was ever made to the other scheme's address
    if where == "manifest":
        assert_nothing_written(dest)
    else:
        assert not any("/manifests/" in target for _, target in writes(dest))
        assert im.list_tags(dest, "mirror/app") == []


# ---------------------------------------------------------------- a hostile tag list (sync rows with tag_pattern)


def test_hostile_tag_list_pages(hostile):
    client = make_client()
    nested = b"[" * 200_000 + b"]" * 200_000
    hostile.route("GET", "/v2/deep/tags/list", lambda h: h.send(200, {"Content-Type": "application/json"}, nested))
    with pytest.raises(RegistryError, match="not JSON"):
        client.tags_list(ref(hostile.host, "deep"))
    # pagination that loops back on itself
    hostile.route("GET", "/v2/loop/tags/list", lambda h: h.send(
        200, {"Content-Type": "application/json", "Link": '</v2/loop/tags/list?n=1000>; rel="next"'},
        b'{"name": "loop", "tags": ["a"]}'))
    with pytest.raises(RegistryError, match="loops back"):
        client.tags_list(ref(hostile.host, "loop"))
    # a page pointing at another scheme
    hostile.route("GET", "/v2/scheme/tags/list", lambda h: h.send(
        200, {"Content-Type": "application/json", "Link": '<file:///etc/passwd>; rel="next"'}, b'{"tags": ["a"]}'))
    with pytest.raises(UnsafeRedirectError, match="next page"):
        client.tags_list(ref(hostile.host, "scheme"))
