"""The shared test support code works against the real registry, moto and skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
import time

import httpx
import pytest

from tests.support.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    IN_TOTO,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    BearerAuth,
    build_image,
    build_index,
    delete_manifest,
    get_blob,
    get_manifest,
    head_manifest,
    list_tags,
    make_layer,
    push_image,
    push_index,
    sha256_digest,
)
from tests.support.registry import RegistryProcess


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- images


def test_layers_are_real_gzip_tars_with_matching_diff_ids():
    image = build_image("linux/arm64/v8", layers=2, layer_size=3000, seed=7)
    assert image.platform == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert image.config["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]
    for layer in image.layers:
        blob = image.blobs[layer.digest]
        assert _sha(blob) == layer.digest and len(blob) == layer.size
        tar_bytes = gzip.decompress(blob)
        assert _sha(tar_bytes) == layer.diff_id
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            data = tar.extractfile(f"{layer.label}/data.bin").read()
        assert len(data) == 3000
    # deterministic, and seeds/platforms matter
    assert build_image("linux/arm64/v8", layers=2, layer_size=3000, seed=7).digest == image.digest
    assert build_image("linux/arm64/v8", layers=2, layer_size=3000, seed=8).digest != image.digest
    assert build_image("linux/amd64", layers=2, layer_size=3000, seed=7).layers[0].digest != image.layers[0].digest
    docker = build_image("linux/amd64", oci=False)
    assert docker.media_type == DOCKER_MANIFEST and json.loads(docker.manifest)["mediaType"] == DOCKER_MANIFEST


def test_streamed_layer_equals_in_memory_layer():
    size = 2 * 1024 * 1024 + 123
    streamed = make_layer(42, size, stream=True)
    in_memory = make_layer(42, size, stream=False)
    assert streamed.data is None
    assert (streamed.digest, streamed.size, streamed.diff_id) == (in_memory.digest, in_memory.size, in_memory.diff_id)
    regenerated = b"".join(streamed.chunks())
    assert regenerated == in_memory.data
    assert max(len(c) for c in streamed.chunks()) == 64 * 1024


def test_big_layer_pool_generator_is_deterministic_and_incompressible():
    size = 20 * 1024 * 1024  # above the 16 MiB pool: the windowed generator
    layer = make_layer(3, size, stream=True)
    assert layer.size > size  # gzip could not shrink it
    again = hashlib.sha256()
    for chunk in layer.chunks():
        again.update(chunk)
    assert "sha256:" + again.hexdigest() == layer.digest


def test_push_index_with_attestations_reads_back_identical(registry, sample_index):
    index = sample_index
    assert [c["platform"]["os"] for c in index.json["manifests"]] == ["linux", "linux", "unknown", "unknown"]
    attestation = index.json["manifests"][2]
    assert attestation["annotations"] == {
        "vnd.docker.reference.digest": index.images[0].digest,
        "vnd.docker.reference.type": "attestation-manifest",
    }
    assert index.attestations[0].json["layers"][0]["mediaType"] == IN_TOTO

    assert push_index(registry.url, "team/app", index, tag="v1") == index.digest
    body, content_type, digest = get_manifest(registry, "team/app", "v1")
    assert (body, content_type, digest) == (index.manifest, OCI_INDEX, index.digest)
    for child in index.children:
        body, content_type, digest = get_manifest(registry, "team/app", child.digest)
        assert (body, content_type, digest) == (child.manifest, OCI_MANIFEST, child.digest)
        for blob_digest in child.blob_digests:
            assert _sha(get_blob(registry, "team/app", blob_digest)) == blob_digest
    assert list_tags(registry, "team/app") == ["v1"]
    assert list_tags(registry, "team/nothing") == []
    assert head_manifest(registry, "team/app", "v1") == index.digest
    assert head_manifest(registry, "team/app", "v2") is None


def test_docker_manifest_list_round_trip(registry):
    images = [build_image(p, oci=False, seed=2) for p in ("linux/amd64", "linux/arm/v7")]
    index = build_index(images, oci=False)
    push_index(registry, "lib/busy", index, tag="1.0")
    body, content_type, digest = get_manifest(registry, "lib/busy", "1.0")
    assert (body, content_type, digest) == (index.manifest, DOCKER_LIST, index.digest)
    assert b'\n   "schemaVersion"' in body  # Docker-style 3-space indentation survives


def test_skopeo_accepts_the_images(registry, sample_index, tmp_path):
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is required (apt-get install -y skopeo)"
    push_index(registry, "team/app", sample_index, tag="v1")
    out = tmp_path / "oci"
    subprocess.run(
        [skopeo, "copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/team/app:v1", f"oci:{out}:v1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    oci_index = json.loads((out / "index.json").read_text())
    assert oci_index["manifests"][0]["digest"] == sample_index.digest


def test_streamed_layer_push(registry):
    image = build_image("linux/amd64", layers=1, layer_size=3 * 1024 * 1024, seed=5, stream=True)
    assert image.layers[0].streamed and image.layers[0].digest not in image.blobs
    push_image(registry, "big/one", image, tag="latest")
    layer = image.layers[0]
    assert _sha(get_blob(registry, "big/one", layer.digest)) == layer.digest
    assert get_manifest(registry, "big/one", "latest")[2] == image.digest


# ---------------------------------------------------------------------- registries


def test_htpasswd_registry_rejects_without_credentials(auth_registry):
    assert httpx.get(f"{auth_registry.url}/v2/").status_code == 401
    bad = httpx.get(f"{auth_registry.url}/v2/", auth=httpx.BasicAuth("tester", "wrong"))
    assert bad.status_code == 401
    assert httpx.get(f"{auth_registry.url}/v2/", auth=auth_registry.auth).status_code == 200
    image = build_image(seed=9)
    push_image(auth_registry, "secure/app", image, tag="t", auth=auth_registry.auth)
    assert get_manifest(auth_registry, "secure/app", "t", auth=auth_registry.auth)[2] == image.digest


def test_missing_registry_binary_raises():
    with pytest.raises(RuntimeError, match="not on PATH"):
        RegistryProcess(binary="no-such-registry-binary").start()


def test_filesystem_registry_deletes_and_stops_cleanly(registry_factory):
    reg = registry_factory(storage="filesystem")
    image = build_image(seed=10)
    push_image(reg, "on/disk", image, tag="t")
    assert any(reg.data_dir.rglob("data"))  # blobs are on disk
    delete_manifest(reg, "on/disk", image.digest)  # delete is enabled
    assert head_manifest(reg, "on/disk", "t") is None
    workdir = reg.workdir
    reg.stop()
    assert not reg.running and not workdir.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{reg.port}/v2/", timeout=2)


# ---------------------------------------------------------------------- proxy


def test_proxy_passes_through_and_counts(registry, proxy_factory, sample_index):
    proxy = proxy_factory(registry)
    push_index(proxy.url, "team/app", sample_index, tag="v1")
    # uploads went through the proxy: Location was rewritten to the proxy's address
    blob_puts = proxy.count("PUT", "/blobs/uploads/")
    assert blob_puts == len({d for c in sample_index.children for d in c.blob_digests})
    assert proxy.count("POST", "/blobs/uploads/") == blob_puts
    assert proxy.count("PUT", "/manifests/v1") == 1
    proxy.reset()
    assert proxy.requests == []
    body, _, digest = get_manifest(proxy, "team/app", "v1")
    assert digest == sample_index.digest
    assert proxy.requests == [("GET", "/v2/team/app/manifests/v1")]
    assert proxy.records[0].status == 200
    assert proxy.count(method="GET", path_contains="/manifests/") == 1
    assert proxy.count(status=404) == 0


def test_proxy_streams_chunked_request_bodies(registry, proxy_factory):
    proxy = proxy_factory(registry)
    payload = bytes(range(256)) * 1000
    digest = sha256_digest(payload)
    with httpx.Client() as client:
        started = client.post(f"{proxy.url}/v2/chunky/blobs/uploads/")
        assert started.status_code == 202 and started.headers["Location"].startswith(proxy.url)
        # a generator body without Content-Length goes out chunked
        patched = client.patch(
            started.headers["Location"],
            content=(payload[i : i + 10000] for i in range(0, len(payload), 10000)),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert patched.status_code == 202, patched.text
        done = client.put(httpx.URL(patched.headers["Location"]).copy_add_param("digest", digest))
        assert done.status_code == 201, done.text
    assert get_blob(proxy, "chunky", digest) == payload


def test_proxy_injects_503_with_retry_after(registry, proxy_factory):
    image = build_image(seed=11)
    push_image(registry, "r", image, tag="t")
    proxy = proxy_factory(registry)
    layer = image.layers[0].digest
    fault = proxy.add_fault(method="GET", path=r"/blobs/", action="status", status=503, times=2,
                            headers={"Retry-After": "1"})
    with httpx.Client() as client:
        for _ in range(2):
            response = client.get(f"{proxy.url}/v2/r/blobs/{layer}")
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert client.get(f"{proxy.url}/v2/r/blobs/{layer}").content == image.blobs[layer]
    assert fault.fired == 2
    assert proxy.count("GET", "/blobs/", status=503) == 2 and proxy.count("GET", "/blobs/", status=200) == 1


def test_proxy_truncates_resets_and_corrupts(registry, proxy_factory):
    image = build_image(seed=12, layer_size=200_000)
    push_image(registry, "r", image)
    digest = image.layers[0].digest
    blob = image.blobs[digest]
    proxy = proxy_factory(registry)
    url = f"{proxy.url}/v2/r/blobs/{digest}"

    proxy.add_fault("GET", "/blobs/", "truncate", after_bytes=1000)
    with httpx.Client() as client, client.stream("GET", url) as response:
        assert response.headers["Content-Length"] == str(len(blob))
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                received += chunk
        assert bytes(received) == blob[:1000]

    proxy.add_fault("GET", "/blobs/", "reset")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(url)

    proxy.add_fault("GET", "/blobs/", "reset_mid_body", after_bytes=70_000)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(url)

    proxy.add_fault("GET", "/blobs/", "corrupt", offset=5)
    corrupted = httpx.get(url).content
    assert len(corrupted) == len(blob) and corrupted != blob
    assert [i for i in range(len(blob)) if corrupted[i] != blob[i]] == [5]

    assert httpx.get(url).content == blob  # every fault fired once; back to normal
    assert [f.fired for f in proxy.faults] == [1, 1, 1, 1]


def test_proxy_stall_redirect_and_forwarded_status(registry_pair, proxy_factory):
    image = build_image(seed=13)
    push_image(registry_pair.source, "r", image, tag="t")
    proxy = proxy_factory(registry_pair.source)
    cdn = proxy_factory(registry_pair.source)
    digest = image.layers[0].digest

    proxy.add_fault("GET", "/blobs/", "stall", delay=5)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{proxy.url}/v2/r/blobs/{digest}", timeout=httpx.Timeout(5, read=0.3))
    assert time.monotonic() - started < 3

    proxy.add_fault("HEAD", "/manifests/", "hang", delay=5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.head(f"{proxy.url}/v2/r/manifests/t", timeout=httpx.Timeout(5, read=0.3))

    proxy.add_fault("GET", "/manifests/", "delay", delay=0.3)
    started = time.monotonic()
    assert httpx.get(f"{proxy.url}/v2/r/manifests/t", headers={"Accept": MANIFEST_ACCEPT}).status_code == 200
    assert time.monotonic() - started >= 0.3

    proxy.add_fault("GET", "/blobs/", "redirect", location=lambda method, target: cdn.url + target)
    response = httpx.get(
        f"{proxy.url}/v2/r/blobs/{digest}", follow_redirects=True, headers={"Authorization": "Basic c2VjcmV0"}
    )
    assert response.content == image.blobs[digest]
    assert response.history[0].status_code == 302
    assert cdn.count("GET", digest) == 1
    assert cdn.authorizations() == [None]  # httpx dropped Authorization across origins

    # forward=True: the registry stores the manifest, but the client sees a 500
    proxy.add_fault("PUT", "/manifests/", "status", status=500, forward=True)
    response = httpx.put(
        f"{proxy.url}/v2/r/manifests/again", content=image.manifest, headers={"Content-Type": image.media_type}
    )
    assert response.status_code == 500
    assert head_manifest(registry_pair.source, "r", "again") == image.digest


def test_proxy_stop_cuts_idle_keepalive_connections(registry, proxy_factory):
    proxy = proxy_factory(registry)
    with httpx.Client() as client:
        assert client.get(f"{proxy.url}/v2/").status_code == 200
        proxy.stop()
        with pytest.raises(httpx.TransportError):
            client.get(f"{proxy.url}/v2/", timeout=2)


def test_proxy_many_concurrent_requests(registry, proxy_factory):
    image = build_image(seed=14, layers=4, layer_size=100_000)
    push_image(registry, "r", image, tag="t")
    proxy = proxy_factory(registry)
    failures = []

    def pull() -> None:
        with httpx.Client() as client:
            for digest in image.blob_digests:
                if _sha(client.get(f"{proxy.url}/v2/r/blobs/{digest}").content) != digest:
                    failures.append(digest)

    threads = [threading.Thread(target=pull) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert proxy.count("GET", "/blobs/") == 8 * 5


# ---------------------------------------------------------------------- bearer front


def test_bearer_front_issues_and_expires_tokens(registry, proxy_factory):
    image = build_image(seed=15)
    push_image(registry, "team/app", image, tag="t")
    proxy = proxy_factory(registry, credentials=("robot", "pat-123"), token_ttl=1.0)
    manifest_url = f"{proxy.url}/v2/team/app/manifests/t"
    headers = {"Accept": MANIFEST_ACCEPT}

    with httpx.Client() as client:
        challenge = client.get(manifest_url, headers=headers)
        assert challenge.status_code == 401
        assert challenge.headers["WWW-Authenticate"] == (
            f'Bearer realm="{proxy.url}/token",service="test-registry",scope="repository:team/app:pull"'
        )
        put_challenge = client.put(manifest_url, content=b"{}")
        assert put_challenge.headers["WWW-Authenticate"].endswith('scope="repository:team/app:pull,push"')

        params = {"service": "test-registry", "scope": "repository:team/app:pull"}
        assert client.get(f"{proxy.url}/token", params=params).status_code == 401
        assert client.get(f"{proxy.url}/token", params=params, auth=("robot", "wrong")).status_code == 401
        granted = client.get(f"{proxy.url}/token", params=params, auth=("robot", "pat-123"))
        assert granted.status_code == 200
        body = granted.json()
        assert body["token"] == body["access_token"] and body["expires_in"] == 1 and body["issued_at"].endswith("Z")
        bearer = {"Authorization": f"Bearer {body['token']}", **headers}
        (grant,) = proxy.tokens
        assert grant.scopes == {"team/app": frozenset({"pull"})} and grant.username == "robot"

        ok = client.get(manifest_url, headers=bearer)
        assert ok.status_code == 200 and ok.content == image.manifest
        # a pull token does not allow a push
        assert client.put(manifest_url, content=image.manifest, headers=bearer).status_code == 401

        time.sleep(max(0.0, grant.expires_at - time.monotonic()) + 0.05)
        assert client.get(manifest_url, headers=bearer).status_code == 401  # expired
    assert proxy.token_requests[-1].username == "robot" and proxy.token_requests[-1].granted
    assert [r.granted for r in proxy.token_requests] == [False, False, True]
    assert f"Bearer {body['token']}" in proxy.authorizations("/manifests/")


def test_bearer_front_expire_tokens_fault_and_helper_auth(registry, proxy_factory):
    proxy = proxy_factory(registry, bearer=True)  # anonymous tokens
    image = build_image(seed=16)
    auth = BearerAuth()
    with httpx.Client(auth=auth) as client:
        push_image(proxy, "anon/app", image, tag="t", client=client)
        assert get_manifest(proxy, "anon/app", "t", client=client)[2] == image.digest
        issued = len(proxy.tokens)
        # the next manifest GET finds every token expired: the client must fetch a new one
        proxy.add_fault("GET", "/manifests/", "expire_tokens")
        assert get_manifest(proxy, "anon/app", "t", client=client)[2] == image.digest
    assert len(proxy.tokens) == issued + 1
    assert all(r.authorization is None or r.authorization.startswith("Bearer ") for r in proxy.records
               if r.path.startswith("/v2/"))


# ---------------------------------------------------------------------- moto


def test_aws_env_resets_moto(aws_env):
    import boto3

    assert boto3.client("ecr").describe_repositories()["repositories"] == []
