"""Fault injection: the fault proxy between ecr-mirror and real registries, each outcome asserted.

Source faults: 429 with and without Retry-After, bursts of 500/502/503, connections reset before
and in the middle of manifests and blobs, bodies truncated under a correct Content-Length, responses
that stall longer than the read timeout, bearer tokens expiring mid-copy. Destination faults:
throttled uploads (429 on POST/PUT, and PATCH, which the client never sends), a failing final
manifest PUT, a PUT applied but answered with an error. The process killed with SIGKILL mid-copy,
then rerun. With the mirror table (moto, a real upstream registry, the ECR stand-in of tests/support/ecr):
one failing row never stops the others, and a sync interrupted at any point loses no status update.

Retry budgets are counted at the proxies: an operation is tried at most ``RetryPolicy.attempts``
times, never that many times inside each of that many retries.

Small images and short timeouts throughout: the file must stay fast on a 2-core CI runner.
(``tests/integration/test_copy.py`` has the first versions of some source faults; these are the
complete matrix.)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from ecr_mirror.config import Settings
from ecr_mirror.copy import Copier
from ecr_mirror.errors import RegistryError, TransportError
from ecr_mirror.registry import FAST, RegistryClient, RetryPolicy, StaticCredentials
from ecr_mirror.registry.client import default_http_client
from ecr_mirror.runtime import boto3_client, build_syncer
from ecr_mirror.store import MirrorTable
from tests.integration.helpers import ref
from tests.support import images as im

ECR_MIRROR = str(Path(sys.executable).with_name("ecr-mirror"))


class Sleeps(list):
    """The client's ``sleep``: records each backoff, waits at most 50 ms of it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(min(seconds, 0.05))


def client(retry: RetryPolicy = FAST, *, timeout: float | None = None, credentials: dict | None = None) -> RegistryClient:
    http = default_http_client(8)
    if timeout is not None:
        http.timeout = httpx.Timeout(timeout)
    return RegistryClient(http, credentials=StaticCredentials(credentials or {}), retry=retry, sleep=Sleeps())


def index_of(seed: int, *, layer_size: int = 120_000, layers: int = 2, attestations: bool = False) -> im.Index:
    return im.build_index(
        [im.build_image("linux/amd64", seed=seed, layers=layers, layer_size=layer_size),
         im.build_image("linux/arm64/v8", seed=seed, layers=layers, layer_size=layer_size)],
        attestations=attestations,
    )


def complete(registry: Any, repo: str, digest: str, auth: httpx.Auth | None = None) -> bool:
    """Whether ``digest`` and everything it references (children, blobs: bytes verified) is in ``repo``."""
    try:
        raw, _, got = im.get_manifest(registry, repo, digest, auth)
        if got != digest:
            return False
        docs = [json.loads(raw)]
        for child in docs[0].get("manifests", []):
            craw, _, cgot = im.get_manifest(registry, repo, child["digest"], auth)
            if cgot != child["digest"]:
                return False
            docs.append(json.loads(craw))
        for doc in docs:
            for blob in [doc.get("config"), *doc.get("layers", [])]:
                if blob and "sha256:" + hashlib.sha256(im.get_blob(registry, repo, blob["digest"], auth)).hexdigest() != blob["digest"]:
                    return False
    except im.RegistryError:
        return False
    return True


def copy_ok(c: RegistryClient, source: str, destination: str, index: im.Index, dst: Any, repo: str = "app"):
    with Copier(c, concurrency=4) as copier:
        report = copier.copy(ref(*source.split("/", 1)), ref(*destination.split("/", 1)))
    assert report.digest == index.digest
    assert im.head_manifest(dst, repo, "v1") == index.digest
    assert complete(dst, repo, index.digest)
    return report


@pytest.fixture
def pair(registry_pair, proxy_factory):
    """(source registry, its proxy, destination registry, its proxy, the index at source app:v1)."""
    src, dst = registry_pair
    index = index_of(1)
    im.push_index(src, "app", index, "v1")
    return src, proxy_factory(src), dst, proxy_factory(dst), index


# ---------------------------------------------------------------- 429


@pytest.mark.parametrize("retry_after", ["0.3", None, "3600", "date"], ids=["seconds", "none", "huge", "http-date"])
def test_429_with_and_without_retry_after(pair, retry_after):
    src, sproxy, dst, _, index = pair
    headers = {}
    if retry_after == "date":
        import email.utils

        headers["Retry-After"] = email.utils.formatdate(time.time() + 20, usegmt=True)
    elif retry_after:
        headers["Retry-After"] = retry_after
    rules = [sproxy.add_fault(method="GET", path=path, action="status", status=429, headers=headers, times=1)
             for path in (r"/manifests/sha256:", r"/blobs/")]
    policy = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02, max_total=120, max_retry_after=30.0)
    c = client(policy)
    copy_ok(c, f"{sproxy.host}/app:v1", f"{dst.host}/app:v1", index, dst)
    assert [r.fired for r in rules] == [1, 1]
    waits = c._sleep
    if retry_after is None:  # exponential backoff with jitter, bounded by max_delay
        assert len(waits) == 2 and all(0 < w <= 0.02 for w in waits)
    elif retry_after == "0.3":
        assert waits == [0.3, 0.3]  # honoured exactly
    elif retry_after == "3600":
        assert waits == [30.0, 30.0]  # honoured up to the policy's ceiling, never an hour
    else:
        assert len(waits) == 2 and all(10.0 <= w <= 20.0 for w in waits)  # an HTTP date twenty seconds ahead


# ---------------------------------------------------------------- 5xx bursts


@pytest.mark.parametrize("status", [500, 502, 503])
def test_bursts_of_5xx_are_survived(pair, status):
    """A burst of ``attempts - 1`` errors in a row on the tag HEAD, a manifest GET and a blob GET."""
    src, sproxy, dst, _, index = pair
    burst = FAST.attempts - 1
    rules = [sproxy.add_fault(method=method, path=path, action="status", status=status, times=burst)
             for method, path in (("HEAD", r"/manifests/v1$"), ("GET", r"/manifests/sha256:"), ("GET", r"/blobs/"))]
    copy_ok(client(), f"{sproxy.host}/app:v1", f"{dst.host}/app:v1", index, dst)
    assert [r.fired for r in rules] == [burst] * 3


def test_5xx_longer_than_the_retry_budget_fails_cleanly(pair):
    src, sproxy, dst, _, index = pair
    old = im.build_image("linux/amd64", seed=77)
    im.push_image(dst, "app", old, "v1")
    sproxy.add_fault(method="GET", path=r"/manifests/sha256:", action="status", status=503, times=None)
    with Copier(client(), concurrency=4) as copier, pytest.raises(RegistryError) as caught:
        copier.copy(ref(sproxy.host, "app:v1"), ref(dst.host, "app:v1"))
    assert caught.value.status == 503 and caught.value.temporary
    assert f"GET manifest {sproxy.host}/app@{index.digest}: HTTP 503" in str(caught.value)
    assert sproxy.count("GET", "/manifests/sha256:") == FAST.attempts  # bounded
    assert im.head_manifest(dst, "app", "v1") == old.digest  # the tag as it was


# ---------------------------------------------------------------- broken connections


@pytest.mark.parametrize(
    "faults",
    [
        [dict(method="HEAD", path=r"/manifests/v1$", action="reset", times=1),
         dict(method="GET", path=r"/manifests/sha256:", action="reset", times=1),
         dict(method="GET", path=r"/manifests/sha256:", action="reset_mid_body", after_bytes=100, times=2),
         dict(method="GET", path=r"/blobs/", action="reset", times=1),
         dict(method="GET", path=r"/blobs/", action="reset_mid_body", after_bytes=20_000, times=2)],
        [dict(method="GET", path=r"/manifests/sha256:", action="truncate", after_bytes=100, times=2),
         dict(method="GET", path=r"/blobs/", action="truncate", after_bytes=20_000, times=3)],
    ],
    ids=["resets-before-and-mid-manifest-and-blob", "truncated-manifest-and-blob"],
)
def test_broken_and_truncated_connections_are_survived(pair, faults):
    """Truncated bodies keep their full Content-Length: the client notices the short read itself."""
    src, sproxy, dst, _, index = pair
    rules = [sproxy.add_fault(**fault) for fault in faults]
    copy_ok(client(), f"{sproxy.host}/app:v1", f"{dst.host}/app:v1", index, dst)
    assert [r.fired for r in rules] == [f["times"] for f in faults]


# ---------------------------------------------------------------- stalls


@pytest.mark.parametrize(
    ("side", "faults"),
    [
        ("source", [dict(method="GET", path=r"/manifests/sha256:", action="stall", after_bytes=0, delay=20),
                    dict(method="GET", path=r"/manifests/sha256:", action="stall", after_bytes=50, delay=20),
                    dict(method="GET", path=r"/blobs/", action="stall", after_bytes=20_000, delay=20),
                    dict(method="GET", path=r"/blobs/", action="hang", delay=20)]),
        ("dest", [dict(method="PUT", path=r"/manifests/v1$", action="hang", delay=20, forward=True)]),
    ],
    ids=["source-stalls-after-headers-mid-manifest-mid-blob-and-silent", "dest-silent-after-final-put"],
)
def test_stalled_responses_longer_than_the_read_timeout(pair, side, faults):
    src, sproxy, dst, dproxy, index = pair
    rules = [(sproxy if side == "source" else dproxy).add_fault(**fault) for fault in faults]
    started = time.monotonic()
    copy_ok(client(timeout=0.5), f"{sproxy.host}/app:v1", f"{dproxy.host}/app:v1", index, dst)
    assert [r.fired for r in rules] == [1] * len(faults)
    assert time.monotonic() - started < 10  # gave up on each stalled response after the read timeout, not 20 s


def test_stall_on_every_try_fails_cleanly_and_bounded(registry_pair, proxy_factory):
    src, dst = registry_pair
    image = im.build_image("linux/amd64", seed=5, layers=1, layer_size=50_000)
    im.push_image(src, "app", image, "v1")
    sproxy = proxy_factory(src)
    layer = image.layers[0].digest
    sproxy.add_fault(method="GET", path=f"/blobs/{layer}", action="hang", delay=20, times=None)
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, max_total=30)
    started = time.monotonic()
    with Copier(client(policy, timeout=0.3), concurrency=2) as copier, pytest.raises(TransportError) as caught:
        copier.copy(ref(sproxy.host, "app:v1"), ref(dst.host, "app:v1"))
    assert "ReadTimeout" in str(caught.value) and layer in str(caught.value)
    assert time.monotonic() - started < 10
    # the copier restarts the blob as a whole; the GET inside is not retried on its own as well
    assert sproxy.count("GET", layer) == policy.attempts
    assert im.head_manifest(dst, "app", "v1") is None


@pytest.mark.parametrize("action", ["status", "reset", "truncate"], ids=["503", "reset-before-answer", "truncated-body"])
def test_a_failing_blob_is_fetched_at_most_attempts_times(registry_pair, proxy_factory, action):
    """Retries do not nest: a blob whose every GET fails is asked for ``attempts`` times at the source,
    not ``attempts`` squared, whether the failure is an error status, a reset or a body cut short; and no
    upload session is opened at the destination for a try whose source GET got no answer."""
    src, dst = registry_pair
    image = im.build_image("linux/amd64", seed=6, layers=1, layer_size=50_000)
    im.push_image(src, "app", image, "v1")
    sproxy, dproxy = proxy_factory(src), proxy_factory(dst)
    layer = image.layers[0].digest
    sproxy.add_fault(method="GET", path=f"/blobs/{layer}", action=action, status=503, after_bytes=20_000, times=None)
    with Copier(client(FAST), concurrency=2) as copier, pytest.raises(RegistryError) as caught:
        copier.copy(ref(sproxy.host, "app:v1"), ref(dproxy.host, "app:v1"))
    assert layer in str(caught.value) and caught.value.temporary
    assert sproxy.count("GET", layer) == FAST.attempts
    uploads = dproxy.count("POST", "/blobs/uploads/")
    assert uploads == (FAST.attempts if action == "truncate" else 0) + 1  # + the config blob's
    assert im.head_manifest(dst, "app", "v1") is None


def test_a_failing_token_endpoint_is_asked_at_most_attempts_times(registry_pair, proxy_factory):
    """Retries do not nest: the token fetch inside a request is tried once per try of that request, so a
    token endpoint that always fails is asked ``attempts`` times in all, not ``attempts`` squared."""
    src, dst = registry_pair
    im.push_image(src, "app", im.build_image("linux/amd64", seed=7, layers=1, layer_size=5_000), "v1")
    front = proxy_factory(src, bearer=True)
    front.add_fault(method="GET", path=r"^/token", action="status", status=503, times=None)
    with Copier(client(FAST)) as copier, pytest.raises(RegistryError) as caught:
        copier.copy(ref(front.host, "app:v1"), ref(dst.host, "app:v1"))
    assert "token endpoint" in str(caught.value) and caught.value.temporary
    assert front.count("GET", "/token") == FAST.attempts
    assert front.count("HEAD", "/manifests/v1") == FAST.attempts  # each try: the request, its 401, one token fetch


# ---------------------------------------------------------------- bearer tokens expiring mid-copy


def _401_after_success(proxy) -> bool:
    statuses = [r.status for r in proxy.records if r.target.startswith("/v2/")]
    first_ok = next(i for i, s in enumerate(statuses) if s and s < 300)
    return 401 in statuses[first_ok:]


def test_bearer_tokens_expiring_mid_copy_at_both_ends(registry_pair, proxy_factory):
    src, dst = registry_pair
    index = index_of(2)
    im.push_index(src, "app", index, "v1")
    sfront = proxy_factory(src, credentials=("puller", "pull-pw"))
    dfront = proxy_factory(dst, credentials=("pusher", "push-pw"))
    arm_layer = index.image_for("linux/arm64/v8").layers[1].digest
    sfront.add_fault(method="GET", path=f"/blobs/{arm_layer}", action="expire_tokens", times=1)
    # the streamed blob PUT cannot be replayed: the copier restarts that blob with a fresh token
    dfront.add_fault(method="PUT", path=r"/blobs/uploads/", action="expire_tokens", times=1)
    dfront.add_fault(method="PUT", path=r"/manifests/sha256:", action="expire_tokens", times=1)
    c = client(credentials={sfront.host: {"username": "puller", "password": "pull-pw"},
                            dfront.host: {"username": "pusher", "password": "push-pw"}})
    copy_ok(c, f"{sfront.host}/app:v1", f"{dfront.host}/app:v1", index, dst)
    for front in (sfront, dfront):
        assert len(front.token_requests) >= 2 and all(t.granted for t in front.token_requests)
        assert _401_after_success(front)


def test_short_lived_tokens_expire_by_time_mid_copy(registry_pair, proxy_factory):
    """Tokens that live one second (expires_in: 1), blobs that take 0.8 s each: refreshed on the way."""
    src, dst = registry_pair
    index = index_of(3)
    im.push_index(src, "app", index, "v1")
    front = proxy_factory(src, bearer=True, token_ttl=1)
    front.add_fault(method="GET", path=r"/blobs/", action="delay", delay=0.8, times=None)
    copy_ok(client(), f"{front.host}/app:v1", f"{dst.host}/app:v1", index, dst)
    assert len(front.token_requests) >= 2


# ---------------------------------------------------------------- the destination throttling and failing


def test_destination_throttling_uploads(pair):
    src, _, dst, dproxy, index = pair
    rules = {
        "POST upload": dproxy.add_fault(method="POST", path=r"/blobs/uploads/", action="status", status=429,
                                        headers={"Retry-After": "0"}, times=2),
        "PUT blob": dproxy.add_fault(method="PUT", path=r"/blobs/uploads/", action="status", status=429, times=2),
        "PATCH blob": dproxy.add_fault(method="PATCH", path=r"/blobs/uploads/", action="status", status=429, times=None),
        "PUT child": dproxy.add_fault(method="PUT", path=r"/manifests/sha256:", action="status", status=429, times=2),
        "PUT tag": dproxy.add_fault(method="PUT", path=r"/manifests/v1$", action="status", status=429, times=1),
    }
    copy_ok(client(), f"{src.host}/app:v1", f"{dproxy.host}/app:v1", index, dst)
    assert {k: r.fired for k, r in rules.items()} == {"POST upload": 2, "PUT blob": 2, "PATCH blob": 0, "PUT child": 2, "PUT tag": 1}
    assert dproxy.count("PATCH") == 0  # uploads are POST + one monolithic PUT


def test_destination_throttling_that_never_ends(pair):
    src, _, dst, dproxy, index = pair
    old = im.build_image("linux/amd64", seed=78)
    im.push_image(dst, "app", old, "v1")
    dproxy.add_fault(method="PUT", path=r"/blobs/uploads/", action="status", status=429, times=None)
    with Copier(client(), concurrency=4) as copier, pytest.raises(RegistryError) as caught:
        copier.copy(ref(src.host, "app:v1"), ref(dproxy.host, "app:v1"))
    assert caught.value.status == 429 and "upload blob sha256:" in str(caught.value)
    assert dproxy.count("PUT", "/manifests/") == 0
    assert im.head_manifest(dst, "app", "v1") == old.digest


def test_failing_final_manifest_put_then_rerun(pair):
    src, sproxy, dst, dproxy, index = pair
    old = im.build_image("linux/amd64", seed=79)
    im.push_image(dst, "app", old, "v1")
    dproxy.add_fault(method="PUT", path=r"/manifests/v1$", action="status", status=500, times=None)
    with Copier(client(), concurrency=4) as copier, pytest.raises(RegistryError) as caught:
        copier.copy(ref(sproxy.host, "app:v1"), ref(dproxy.host, "app:v1"))
    assert f"PUT manifest {dproxy.host}/app:v1: HTTP 500" in str(caught.value)
    assert im.head_manifest(dst, "app", "v1") == old.digest  # never pointed at the new image
    for child in index.children:  # children were pushed by digest first
        assert complete(dst, "app", child.digest)
    # the rerun skips every child (one HEAD each) and copies no blob, fetching none at the source
    dproxy.clear_faults()
    sproxy.reset()
    report = copy_ok(client(), f"{sproxy.host}/app:v1", f"{dproxy.host}/app:v1", index, dst)
    assert report.manifests_skipped == len(index.children) and report.manifests_copied == 1
    assert report.blobs_copied == 0 and sproxy.count("GET", "/blobs/") == 0


@pytest.mark.parametrize("action", ["status", "reset"])
def test_final_manifest_put_applied_but_the_answer_lost(pair, action):
    """The registry stored the tag, the client saw a 500 or a reset: the retried PUT is idempotent."""
    src, _, dst, dproxy, index = pair
    rule = dproxy.add_fault(method="PUT", path=r"/manifests/v1$", action=action, status=500, forward=True, times=1)
    copy_ok(client(), f"{src.host}/app:v1", f"{dproxy.host}/app:v1", index, dst)
    assert rule.fired == 1 and dproxy.count("PUT", "/manifests/v1") == 2


# ---------------------------------------------------------------- SIGKILL mid-copy, then rerun


class TagWatcher(threading.Thread):
    """Polls the destination tag; every digest it ever shows must be a complete image."""

    def __init__(self, registry: Any, repo: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.registry, self.repo, self.tag = registry, repo, tag
        self.seen: dict[str, bool] = {}
        self.polls = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    digest = im.head_manifest(self.registry, self.repo, self.tag, client=http)
                except (im.RegistryError, httpx.HTTPError):
                    digest = None
                self.polls += 1
                if digest and digest not in self.seen:
                    self.seen[digest] = complete(self.registry, self.repo, digest)
                self.stop.wait(0.02)


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECR_MIRROR_", "AWS_"))}
    env.update(DOCKER_CONFIG=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")
    return env


def test_sigkill_mid_copy_then_rerun(registry_pair, proxy_factory, tmp_path):
    src, dst = registry_pair
    old = im.build_image("linux/amd64", seed=80)
    im.push_image(dst, "app", old, "v1")
    index = index_of(6, layers=3, layer_size=60_000, attestations=True)
    im.push_index(src, "app", index, "v1")
    sproxy = proxy_factory(src)
    sproxy.add_fault(method="GET", path=r"/blobs/", action="delay", delay=0.3, times=None)
    command = [ECR_MIRROR, "--concurrency", "1", "copy", f"{sproxy.host}/app:v1", f"{dst.host}/app:v1", "--json"]
    watcher = TagWatcher(dst, "app", "v1")
    watcher.start()
    try:
        proc = subprocess.Popen(command, env=_cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not any(im.head_manifest(dst, "app", c.digest) for c in index.children):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no child manifest was written"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        # mid-copy: the tag still shows the old image, some children and blobs are there, not all
        assert im.head_manifest(dst, "app", "v1") == old.digest
        present_children = {c.digest for c in index.children if im.head_manifest(dst, "app", c.digest)}
        assert 0 < len(present_children) < len(index.children)
        blobs = {b: child.digest for child in index.children for b in child.blob_digests}
        present_blobs = {b for b in blobs if im.blob_exists(dst, "app", b)}
        assert present_blobs < set(blobs)

        sproxy.clear_faults()
        sproxy.reset()
        rerun = subprocess.run(command, env=_cli_env(tmp_path), capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        report = json.loads(rerun.stdout)
        deadline = time.monotonic() + 5
        while index.digest not in watcher.seen and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watcher.stop.set()
        watcher.join()
    assert report["digest"] == index.digest
    # it skipped what was there: whole children by one HEAD each, then blobs by one HEAD each
    assert report["manifests_skipped"] == len(present_children)
    pending_blobs = {b for b, child in blobs.items() if child not in present_children}
    assert report["blobs_skipped"] == len(pending_blobs & present_blobs)
    assert report["blobs_copied"] == len(pending_blobs - present_blobs) == sproxy.count("GET", "/blobs/")
    assert im.head_manifest(dst, "app", "v1") == index.digest and complete(dst, "app", index.digest)
    # and the tag only ever pointed at a complete image
    assert watcher.polls > 10
    assert watcher.seen == {old.digest: True, index.digest: True}


# ---------------------------------------------------------------- the mirror table: rows and status


@pytest.fixture
def mirror(monkeypatch, ecr, registry_factory, proxy_factory):
    """A mirror table in moto, an upstream registry behind a fault proxy, ECR = the ``ecr`` stand-in."""
    upstream = registry_factory()
    proxy = proxy_factory(upstream)
    name = "mirror-" + uuid.uuid4().hex[:8]
    monkeypatch.setenv("ECR_MIRROR_TARGET_REGISTRY", ecr.host)
    monkeypatch.setenv("ECR_MIRROR_TABLE", name)
    monkeypatch.setenv("ECR_MIRROR_CONCURRENCY", "4")
    table = MirrorTable(boto3_client("dynamodb"), name)
    table.create()

    class Mirror:
        pass

    m = Mirror()
    m.upstream, m.proxy, m.ecr, m.table = upstream, proxy, ecr, table
    m.items = boto3.resource("dynamodb").Table(name)
    m.auth = ecr.auth
    m.build = lambda: build_syncer(Settings.from_env(), table, retry=FAST)
    return m


def _status(table: MirrorTable) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(r["id"], r["tag"]): r for r in table.read_status()}


def test_one_failing_row_never_stops_the_others(mirror, registry_factory):
    up, proxy = mirror.upstream, mirror.proxy
    good = index_of(10, layer_size=20_000)
    im.push_index(up, "app", good, "v1")
    im.push_index(up, "app", index_of(11, layer_size=20_000), "v2")
    corrupt = im.build_image("linux/amd64", seed=12, layers=1, layer_size=20_000)
    im.push_image(up, "corrupt", corrupt, "v1")
    proxy.add_fault(method="GET", path=f"/blobs/{corrupt.layers[0].digest}", action="corrupt", times=None)
    proxy.add_fault(method="HEAD", path=r"/v2/app/manifests/v2$", action="status", status=500, times=None)
    proxy.add_fault(method="GET", path=r"/v2/deep/tags/list", action="status", status=200,
                    body=b"[" * 100_000 + b"]" * 100_000, times=None)
    dead = registry_factory()
    dead_host = dead.host
    dead.stop()  # a registry that no longer answers at all
    rows = [
        {"id": "corrupt", "source": f"{proxy.host}/corrupt", "tags": ["v1"], "target_repository": "mirror/corrupt"},
        {"id": "good-a", "source": f"{proxy.host}/app", "tags": ["v1"], "target_repository": "mirror/a"},
        {"id": "missing", "source": f"{proxy.host}/app", "tags": ["nope"], "target_repository": "mirror/missing"},
        {"id": "unreachable", "source": f"{dead_host}/app", "tags": ["v1"], "target_repository": "mirror/dead"},
        {"id": "deep-tags", "source": f"{proxy.host}/deep", "tag_pattern": "v.*", "target_repository": "mirror/deep"},
        {"id": "invalid", "source": f"{proxy.host}/app", "tags": ["v1"], "platforms": ["linux"]},
        {"id": "good-b", "source": f"{proxy.host}/app", "tags": ["v1", "v2"], "target_repository": "mirror/b"},
    ]
    for row in rows:
        mirror.items.put_item(Item=row)
    syncer = mirror.build()
    try:
        results = {r.row_id: r for r in syncer.sync_items([mirror.table.get_row(row["id"]) for row in rows])}
    finally:
        syncer.copier.close()
    assert list(results) == [row["id"] for row in rows]  # every row was attempted, in order
    status = _status(mirror.table)

    # the good rows and the good tag of a half-failing row are mirrored and in sync
    for row_id in ("good-a", "good-b"):
        assert status[(row_id, "v1")]["state"] == "in_sync"
        assert status[(row_id, "v1")]["target_digest"] == good.digest
    assert im.head_manifest(mirror.ecr, "mirror/a", "v1", mirror.auth) == good.digest
    assert complete(mirror.ecr, "mirror/b", good.digest, mirror.auth)
    # each failure is recorded against its row and tag, with a clear error
    assert status[("good-b", "v2")]["state"] == "failed" and "HTTP 500" in status[("good-b", "v2")]["error"]
    assert status[("corrupt", "v1")]["state"] == "failed"
    assert corrupt.layers[0].digest in status[("corrupt", "v1")]["error"]
    assert status[("missing", "nope")]["state"] == "failed"
    assert "not found" in status[("missing", "nope")]["error"]
    assert status[("unreachable", "v1")]["state"] == "failed" and dead_host in status[("unreachable", "v1")]["error"]
    assert status[("invalid", None)]["state"] == "invalid" and "'platforms'" in status[("invalid", None)]["error"]
    assert results["deep-tags"].error and "not JSON" in results["deep-tags"].error
    # nothing was written for the failed images
    assert im.list_tags(mirror.ecr, "mirror/corrupt", mirror.auth) == []
    assert not im.blob_exists(mirror.ecr, "mirror/corrupt", corrupt.layers[0].digest, mirror.auth)


class Crash(BaseException):
    """Stands in for the process dying (SIGKILL, Lambda timeout): not an error anything may catch."""


class CrashingTable:
    """The real table, but the process 'dies' just before status write number ``at``.

    Records every write that went through, per row, to compare with what the table holds."""

    def __init__(self, table: MirrorTable, at: int | None) -> None:
        self._table, self._at, self.writes = table, at, 0
        self._lock = threading.Lock()
        self.written: dict[str, list[dict[str, Any]]] = {}
        self.crashed: str | None = None

    def write_status(self, row_id: str, tag: str, entry: dict[str, Any]) -> bool:
        with self._lock:
            self.writes += 1
            if self.writes == self._at:
                self.crashed = row_id
                raise Crash(f"died before status write {self.writes} ({row_id}:{tag} -> {entry['state']})")
        ok = self._table.write_status(row_id, tag, entry)
        assert ok, "no other writer here: no write may be dropped"
        with self._lock:
            self.written.setdefault(row_id, []).append(dict(entry))
        return ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_interrupted_sync_loses_no_status_update(mirror):
    """Kill the sync at every point (before each status write, and in the middle of a blob upload):
    every status update made before the kill is in the table, a tag whose copy was interrupted shows
    the state detected before it (not a stale 'in_sync'), 'in_sync' is never recorded for an image
    the target does not hold, the tag always points at a complete image, and the next sync finishes."""
    up = mirror.upstream
    rows = ["r0", "r1"]
    for i, row_id in enumerate(rows):
        im.push_image(up, f"app{i}", im.build_image("linux/amd64", seed=100 + i, layers=1, layer_size=5_000), "v1")
        mirror.items.put_item(Item={"id": row_id, "source": f"{up.host}/app{i}", "tags": ["v1"],
                                    "target_repository": f"mirror/app{i}"})
    syncer = mirror.build()
    real_table = mirror.table
    real_finish = syncer.client.blob_upload_finish

    def sync(table: CrashingTable, crash_upload: bool = False) -> None:
        uploads, lock = [], threading.Lock()

        def finish(destination: Any, *args: Any, **kwargs: Any) -> None:
            with lock:
                uploads.append(destination.repository)
                crash = crash_upload and len(uploads) == 2
            if crash:
                table.crashed = "r" + destination.repository.removeprefix("mirror/app")
                raise Crash("died in the middle of a blob upload")
            return real_finish(destination, *args, **kwargs)

        syncer.table, syncer.client.blob_upload_finish = table, finish
        try:
            syncer.sync_items([real_table.get_row(r) for r in rows])
        finally:
            syncer.table, syncer.client.blob_upload_finish = real_table, real_finish

    try:
        sync(CrashingTable(real_table, None))  # everything in sync at generation 0
        points = [("status", n) for n in range(1, 2 * len(rows) + 1)] + [("upload", 0)]
        for generation, (kind, n) in enumerate(points, start=1):
            before = _status(real_table)
            for i, row_id in enumerate(rows):  # upstream moves for every row
                image = im.build_image("linux/amd64", seed=1000 * generation + i, layers=1, layer_size=5_000)
                im.push_image(up, f"app{i}", image, "v1")
            new = {r: im.head_manifest(up, f"app{i}", "v1") for i, r in enumerate(rows)}
            table = CrashingTable(real_table, n if kind == "status" else None)
            with pytest.raises(Crash):
                sync(table, crash_upload=kind == "upload")
            assert table.crashed in rows
            after = _status(real_table)
            for i, row_id in enumerate(rows):
                rec, prev = after[(row_id, "v1")], before[(row_id, "v1")]
                written = table.written.get(row_id, [])
                if written:  # every status update made before the kill is in the table, the last one last
                    last = written[-1]
                    assert (rec["state"], rec["upstream_digest"], rec["last_attempt"]) == (
                        last["state"], last["upstream_digest"], last["last_attempt"])
                else:  # the kill came before this row's first write: untouched
                    assert rec == prev
                if row_id == table.crashed and written:
                    # killed while copying: the state detected before the copy, not a stale in_sync
                    assert (rec["state"], rec["upstream_digest"]) == ("behind", new[row_id])
                    assert rec["last_success"] == prev["last_success"]
                dest_digest = im.head_manifest(mirror.ecr, f"mirror/app{i}", "v1", mirror.auth)
                assert dest_digest in (prev["target_digest"], new[row_id])
                assert complete(mirror.ecr, f"mirror/app{i}", dest_digest, mirror.auth)  # never an incomplete image
                if rec["state"] == "in_sync":  # the status never claims what the target does not hold
                    assert rec["target_digest"] == dest_digest
            # the next sync completes every row and records it
            sync(CrashingTable(real_table, None))
            final = _status(real_table)
            for i, row_id in enumerate(rows):
                rec = final[(row_id, "v1")]
                assert (rec["state"], rec["upstream_digest"], rec["target_digest"]) == ("in_sync", new[row_id], new[row_id])
                assert rec["last_success"] > before[(row_id, "v1")]["last_success"]
                assert im.head_manifest(mirror.ecr, f"mirror/app{i}", "v1", mirror.auth) == new[row_id]
    finally:
        syncer.copier.close()
