"""Ctrl-C (``RegistryClient.abort()``) on the request paths issue 13 and issue 11 added: the confirming GET
after a manifest HEAD 404, ECR's 403 to an expired token (refresh and one more try), and a
non-distributable layer tried from its next URL, a sync listing a row's tags. Once aborted, none of them starts anything more:
no request, no ``GetAuthorizationToken``; the error is :class:`~ecr_mirror.errors.Interrupted`, never
"not found" or a failure recorded for a row.

The abort is thrown from the client's own response observer, at the moment the answer in question
arrives, so each test is deterministic (no timing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from ecr_mirror.config import Settings
from ecr_mirror.errors import Interrupted
from ecr_mirror.registry import FAST, RegistryClient
from ecr_mirror.runtime import boto3_client, build_registry_client, build_syncer
from ecr_mirror.store import MirrorTable, StateTable
from tests.integration.helpers import copier, make_client, ref
from tests.support import field as fl
from tests.support import images as im


def abort_on(client: RegistryClient, when: Callable[[str, str, int], bool]) -> list[tuple[str, int]]:
    """Abort ``client`` as soon as a response for which ``when(host, method, status)`` holds arrives; returns
    the ``(method, status)`` of every response seen."""
    seen: list[tuple[str, int]] = []

    def observe(host: str, method: str, status: int, headers: object) -> None:
        seen.append((method, status))
        if when(host, method, status):
            client.abort()

    client.transport.observers.append(observe)
    return seen


def tables(monkeypatch, ecr, name: str) -> StateTable:
    """A mirror table ``name`` and its state table (moto), the ECR stand-in as the target; the state table."""
    monkeypatch.setenv("ECR_MIRROR_TARGET_REGISTRY", ecr.host)
    table = MirrorTable(boto3_client("dynamodb"), name)
    table.create()
    state = StateTable(boto3_client("dynamodb"), f"{name}-state", rows=table)
    state.create()
    return state


def test_abort_after_a_head_404_skips_the_confirming_get(registry, proxy_factory):
    im.push_image(registry, "app", im.build_image(seed=71), "v1")
    front = proxy_factory(registry)
    front.add_fault("HEAD", "/manifests/", "status", status=404, times=None)  # HEAD 404 while GET works
    client = make_client()
    abort_on(client, lambda host, method, status: method == "HEAD" and status == 404)
    with pytest.raises(Interrupted):
        client.manifest_head(ref(front.host, "app:v1"), confirm_missing=True)  # not None: it is not "missing"
    assert front.count("GET", "/manifests/") == 0
    client.http.close()


def test_abort_on_an_expired_ecr_token_fetches_no_fresh_token(ecr, registry):
    """ECR's 403 DENIED for an expired token makes the client fetch a new one and try again; after an abort it
    does neither: the copy ends Interrupted, one GetAuthorizationToken in all, the tag not written."""
    index = im.build_index([im.build_image("linux/amd64", seed=72), im.build_image("linux/arm64/v8", seed=72)])
    im.push_index(registry, "app", index, "v1")
    ecr.create_repository("team/app")
    fault = ecr.add_fault(method="PUT", path=r"/manifests/sha256:", action="expire_tokens", times=1)
    client = build_registry_client(Settings(target_registry=ecr.host), docker_config=False)
    seen = abort_on(client, lambda host, method, status: status == 403)
    with copier(client, concurrency=1) as c, pytest.raises(Interrupted):
        c.copy(ref(registry.host, "app:v1"), ref(ecr.host, "team/app:v1"))
    assert fault.fired == 1 and ("PUT", 403) in seen
    assert ecr.count(op="GetAuthorizationToken") == 1  # no fresh token after the abort
    assert ecr.count("PUT", "/manifests/v1") == 0 and ecr.tags("team/app") == {}
    client.http.close()


def test_abort_while_a_foreign_layer_is_fetched_is_not_a_reason_to_leave_it_out(registry_factory, proxy_factory, caplog):
    """Opted in, a non-distributable layer is tried from the source registry, then each of its ``urls``; an
    abort during one try ends the copy there: it is not a failure to note and move past."""
    first, second = proxy_factory(registry_factory()), proxy_factory(registry_factory())
    index = fl.windows_manifest_list(seed=73, foreign_urls=lambda digest: [f"{first.url}/v2/cdn/blobs/{digest}",
                                                                          f"{second.url}/v2/cdn/blobs/{digest}"])
    (foreign,) = index.image_for("windows/amd64").foreign
    src = registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))
    dst = registry_factory(manifest_urls_allow=list(fl.URLS_ALLOW_ANY))
    im.push_index(src, "win/app", index, "ltsc")
    client = make_client()
    abort_on(client, lambda host, method, status: host == first.host)  # the source registry had no bytes (404)
    with caplog.at_level(logging.WARNING, logger="ecr_mirror"), copier(client, concurrency=1) as c, pytest.raises(Interrupted):
        c.copy(ref(src.host, "win/app:ltsc"), ref(dst.host, "app:ltsc"), allow_nondistributable=True)
    assert first.count("GET", foreign) == 1 and second.records == []
    assert not [r for r in caplog.records if "left out" in r.getMessage()]  # an abort is not "could not be copied"
    assert im.head_manifest(dst, "app", "ltsc") is None
    client.http.close()


def test_abort_while_a_sync_lists_tags_records_no_failure(monkeypatch, ecr, registry, proxy_factory):
    """A row whose tags come from the upstream list: an abort while the list is read ends the sync with
    Interrupted; the row is not marked failed in the table (Ctrl-C is not the upstream's fault)."""
    im.push_image(registry, "app", im.build_image(seed=74), "v1")
    front = proxy_factory(registry)
    state = tables(monkeypatch, ecr, "mirror-abort")
    item = {"id": "app", "source": f"{front.host}/app", "tag_pattern": "v.*", "target_repository": "mirror/app"}
    front.add_fault("GET", "/tags/list", "status", status=503, times=None)  # temporary: would be tried again
    syncer = build_syncer(Settings.from_env(), state, retry=FAST)
    abort_on(syncer.client, lambda host, method, status: host == front.host and status == 503)
    try:
        with pytest.raises(Interrupted):
            syncer.sync_item(item)
    finally:
        syncer.copier.close()
        syncer.client.http.close()
    assert front.count("GET", "/tags/list") == 1
    assert state.scan_states() == {}


def test_abort_while_tags_are_copied_gives_their_leases_back(monkeypatch, ecr, registry, proxy_factory):
    """Ctrl-C while several tags of a row are being copied at once: every lease the sync took is given back
    (a sync started next copies them at once, instead of skipping them until the leases lapse)."""
    for n in range(3):
        im.push_index(registry, "app", im.build_index([im.build_image("linux/amd64", seed=80 + n),
                                                       im.build_image("linux/arm64/v8", seed=80 + n)]), f"v{n}")
    front = proxy_factory(registry)
    state = tables(monkeypatch, ecr, "mirror-abort-lease")
    item = {"id": "app", "source": f"{front.host}/app", "tags": ["v0", "v1", "v2"], "target_repository": "mirror/app"}
    syncer = build_syncer(Settings.from_env(), state, retry=FAST)
    abort_on(syncer.client, lambda host, method, status: host == front.host and method == "GET" and status == 200)
    try:
        with pytest.raises(Interrupted):
            syncer.sync_item(item)
    finally:
        syncer.copier.close()
        syncer.client.http.close()
    tags = state.read_state("app").tags
    assert sorted(tags) == ["v0", "v1", "v2"]  # each was leased (its state written before its copy) ...
    assert {tag: s.lease_owner for tag, s in tags.items() if s.lease_owner} == {}  # ... and given back
