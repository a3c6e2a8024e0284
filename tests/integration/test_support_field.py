"""tests/support/field.py images and the optional-protocol-behaviour modes of the proxy (faults and
tests/support/quirks.py), against real distribution 2.8 registries."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.field import (
    DOCKER_FOREIGN_LAYER,
    OCI_NONDISTRIBUTABLE_LAYER,
    UNKNOWN_ENTRY_TYPE,
    URLS_ALLOW_ANY,
    WINDOWS_OS_VERSIONS,
    build_nested_index,
    build_windows_image,
    index_with_artifact_entry,
    manifests_in,
    nested_index,
    push_tree,
    windows_manifest_list,
    windows_versions_index,
)
from tests.support.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryError,
    blob_exists,
    build_image,
    get_manifest,
    head_manifest,
    list_tags,
    push_blob,
    push_image,
    push_index,
    sha256_digest,
)
from tests.support.quirks import TagPager


def test_distribution_refuses_foreign_layers_unless_its_config_allows_urls(registry_factory):
    index = windows_manifest_list()
    strict = registry_factory()
    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
        push_index(strict, "win/app", index, tag="ltsc")

    lenient = registry_factory(manifest_urls_allow=list(URLS_ALLOW_ANY))
    push_index(lenient, "win/app", index, tag="ltsc")
    body, content_type, digest = get_manifest(lenient, "win/app", "ltsc")
    assert (body, content_type, digest) == (index.manifest, DOCKER_LIST, index.digest)
    assert [(e["platform"]["os"], e["platform"]["architecture"]) for e in index.json["manifests"]] == [
        ("linux", "amd64"), ("windows", "amd64")
    ]
    windows = index.images[1]
    assert windows.platform["os.version"] == WINDOWS_OS_VERSIONS[0] == windows.config["os.version"]
    foreign = windows.json["layers"][0]
    assert foreign["mediaType"] == DOCKER_FOREIGN_LAYER
    digest = foreign["digest"]
    assert foreign["urls"] == [f"https://foreign-layers.example.invalid/v2/windows/servercore/blobs/{digest}"]
    assert windows.foreign == {foreign["digest"]}
    assert not blob_exists(lenient, "win/app", foreign["digest"])  # the bytes are not in the registry
    others = [d for d in windows.blob_digests if d not in windows.foreign]
    assert others and all(blob_exists(lenient, "win/app", d) for d in others)
    assert get_manifest(lenient, "win/app", windows.digest)[1] == DOCKER_MANIFEST


def test_oci_nondistributable_variant_and_urls_a_test_serves(registry_factory):
    cdn = registry_factory()
    lenient = registry_factory(manifest_urls_allow=list(URLS_ALLOW_ANY))
    index = windows_manifest_list(oci=True, foreign_urls=lambda digest: [f"{cdn.url}/v2/cdn/blobs/{digest}"])
    windows = index.images[1]
    layer = windows.layers[0]
    assert windows.json["layers"][0]["mediaType"] == OCI_NONDISTRIBUTABLE_LAYER
    assert windows.media_type == OCI_MANIFEST and index.media_type == OCI_INDEX
    push_index(lenient, "win/app", index, tag="ltsc")
    assert get_manifest(lenient, "win/app", "ltsc")[2] == index.digest
    # the bytes exist only where the urls point, once the test serves them there
    (url,) = windows.json["layers"][0]["urls"]
    assert httpx.get(url).status_code == 404
    push_blob(cdn, "cdn", layer.digest, layer.data)
    assert sha256_digest(httpx.get(url).content) == layer.digest
    assert not blob_exists(lenient, "win/app", layer.digest)


def test_windows_entries_that_differ_only_in_os_version(registry_factory):
    lenient = registry_factory(manifest_urls_allow=list(URLS_ALLOW_ANY))
    index = windows_versions_index()
    first, second = index.json["manifests"]
    assert first["digest"] != second["digest"]
    assert {k: v for k, v in first["platform"].items() if k != "os.version"} == {
        k: v for k, v in second["platform"].items() if k != "os.version"
    } == {"architecture": "amd64", "os": "windows"}
    assert [first["platform"]["os.version"], second["platform"]["os.version"]] == list(WINDOWS_OS_VERSIONS)
    assert index.platforms == ["windows/amd64", "windows/amd64"]
    push_index(lenient, "win/app", index, tag="multi")
    assert get_manifest(lenient, "win/app", "multi")[2] == index.digest
    plain = windows_versions_index(oci=True, foreign=False)  # no foreign layers: any registry takes it
    push_index(registry_factory(), "win/app", plain, tag="multi")
    with pytest.raises(ValueError):
        windows_versions_index(["10.0.1", "10.0.1"])
    assert build_windows_image().digest == build_windows_image().digest


def test_nested_index_round_trip(registry):
    tree = nested_index()
    inner = tree.entries[0]
    assert [e["mediaType"] for e in tree.json["manifests"]] == [OCI_INDEX, OCI_MANIFEST]
    assert tree.json["manifests"][0] == {"mediaType": OCI_INDEX, "digest": inner.digest, "size": inner.size}
    order = [node.digest for node in manifests_in(tree)]
    assert order == [*(i.digest for i in inner.images), inner.digest, tree.entries[1].digest, tree.digest]
    assert tree.image_for("linux/s390x") is tree.entries[1] and tree.children == (inner, tree.entries[1])
    push_tree(registry, "nested/app", tree, tag="v1")
    assert get_manifest(registry, "nested/app", "v1")[:2] == (tree.manifest, OCI_INDEX)
    assert get_manifest(registry, "nested/app", inner.digest)[0] == inner.manifest
    assert list_tags(registry, "nested/app") == ["v1"]
    # Docker list flavour, and descriptor overrides
    docker = build_nested_index([(build_image(seed=3, oci=False), {"annotations": None})], oci=False)
    assert docker.media_type == DOCKER_LIST and b'\n   "schemaVersion"' in docker.manifest


def test_index_with_artifact_unknown_platform_and_unknown_media_type_entries(registry):
    tree = index_with_artifact_entry(unknown_media_type=True)
    amd64, arm64, docs, extra, odd = tree.json["manifests"]
    assert docs["artifactType"] == "application/vnd.example.docs.v1+json" and "platform" not in docs
    assert extra["platform"] == {"architecture": "unknown", "os": "unknown"} and "annotations" not in extra
    assert odd["mediaType"] == UNKNOWN_ENTRY_TYPE and "artifactType" not in odd
    push_tree(registry, "odd/app", tree, tag="v1")  # distribution only checks that each digest exists
    assert get_manifest(registry, "odd/app", "v1")[0] == tree.manifest
    stored = get_manifest(registry, "odd/app", odd["digest"])
    assert stored[1] == OCI_MANIFEST and json.loads(stored[0])["artifactType"] == "application/vnd.example.odd.v1+json"


# ---------------------------------------------------------------------- optional protocol behaviour


def test_manifest_head_404_while_get_works(registry, proxy_factory):
    image = build_image(seed=61)
    push_image(registry, "r", image, tag="t")
    proxy = proxy_factory(registry)
    proxy.add_fault("HEAD", "/manifests/", "status", status=404, times=None)
    assert head_manifest(proxy, "r", "t") is None
    assert get_manifest(proxy, "r", "t")[2] == image.digest
    assert proxy.count("HEAD", status=404) == 1 and proxy.count("GET", status=200) == 1


def test_drop_headers_removes_content_length_location_and_more(registry, proxy_factory):
    image = build_image(seed=62)
    proxy = proxy_factory(registry)
    proxy.add_fault("HEAD", "/manifests/", "drop_headers", drop=["Content-Length", "Docker-Content-Digest"], times=None)
    proxy.add_fault("GET", "/blobs/", "drop_headers", drop=["content-length"], times=None)
    proxy.add_fault("PUT", "", "drop_headers", drop=["Location"], times=None)
    with httpx.Client() as client:
        push_image(proxy, "r", image, tag="t", client=client)
        puts = len(image.blob_digests) + 1  # config and layers, then the manifest
        assert proxy.count("PUT") == puts and proxy.faults[2].fired == puts
        head = client.head(f"{proxy.url}/v2/r/manifests/t", headers={"Accept": MANIFEST_ACCEPT})
        assert head.status_code == 200 and "content-length" not in head.headers
        assert "docker-content-digest" not in head.headers and head.headers["content-type"] == OCI_MANIFEST
        # the same connection still works after a HEAD without Content-Length
        layer = image.layers[0]
        blob = client.get(f"{proxy.url}/v2/r/blobs/{layer.digest}")
        assert blob.headers.get("transfer-encoding") == "chunked" and "content-length" not in blob.headers
        assert blob.content == layer.data
        put = client.put(f"{proxy.url}/v2/r/manifests/again", content=image.manifest,
                         headers={"Content-Type": image.media_type})
        assert put.status_code == 201 and "location" not in put.headers
    assert head_manifest(registry, "r", "again") == image.digest
    with pytest.raises(ValueError, match="drop="):
        proxy.add_fault("GET", "", "drop_headers")


def test_drop_headers_applies_to_answers_the_proxy_makes_itself(registry, proxy_factory):
    """An extension's (or a handler subclass's) answer loses the headers too; without Content-Length
    a body goes chunked and a HEAD goes without."""
    push_image(registry, "r", build_image(seed=64), tag="t")
    front = proxy_factory(registry, extensions=[TagPager(page_size=10)])
    front.add_fault(None, "/tags/list", "drop_headers", drop=["Content-Length", "Content-Type"], times=None)
    with httpx.Client() as client:
        listed = client.get(f"{front.url}/v2/r/tags/list")
        assert listed.json() == {"name": "r", "tags": ["t"]}
        assert listed.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in listed.headers and "content-type" not in listed.headers
        head = client.head(f"{front.url}/v2/r/tags/list")
        assert head.status_code == 200 and "content-length" not in head.headers
        assert client.get(f"{front.url}/v2/").status_code == 200  # the connection is still in step


@pytest.mark.parametrize("link", [True, False])
def test_tag_pager_pages_tag_lists_with_or_without_link(registry, proxy_factory, link):
    image = build_image(seed=63)
    tags = ["1.0", "1.1", "1.2", "2.0", "latest"]
    for tag in tags:
        push_image(registry, "paged", image, tag=tag)
    front = proxy_factory(registry, extensions=[TagPager(page_size=2, link=link)])
    with httpx.Client() as client:
        whole = client.get(f"{registry.url}/v2/paged/tags/list", params={"n": 2})
        assert whole.json()["tags"] == tags and "link" not in whole.headers  # 2.8 ignores n

        first = client.get(f"{front.url}/v2/paged/tags/list")
        assert first.json() == {"name": "paged", "tags": ["1.0", "1.1"]}
        if link:
            assert first.links["next"]["url"] == "/v2/paged/tags/list?n=2&last=1.1"
        else:
            assert "link" not in first.headers
        collected, url = [], f"{front.url}/v2/paged/tags/list?n=2"
        while url:
            page = client.get(url)
            collected += page.json()["tags"]
            if link:
                url = str(page.url.join(page.links["next"]["url"])) if "next" in page.links else ""
            else:  # no Link: a full page means "ask again after the last tag"
                full = len(page.json()["tags"]) == 2
                url = f"{front.url}/v2/paged/tags/list?n=2&last={collected[-1]}" if full else ""
        assert collected == tags
        assert client.get(f"{front.url}/v2/paged/tags/list", params={"n": 1, "last": "2.0"}).json()["tags"] == [
            "latest"
        ]
        assert client.get(f"{front.url}/v2/nothing/tags/list").status_code == 404
    assert front.count("GET", "/tags/list") == 1 + 3 + 2
