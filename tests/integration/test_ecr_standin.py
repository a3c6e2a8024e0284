"""The ECR stand-in's registry API face, held to ECR's documented behaviour (tests/support/ecr).

Each test names the source of the rule it pins (the same sources ``ecr-facts.md`` collects). The
client side is plain httpx and tests/support/images.py, never the product. What the stand-in does
not model is listed in the docstring of :mod:`tests.support.ecr`.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from tests.support.ecr import MANIFEST_LIMIT, PART_MINIMUM, EcrStandIn
from tests.support.images import (
    MANIFEST_ACCEPT,
    OCI_MANIFEST,
    BearerAuth,
    build_image,
    build_index,
    get_blob,
    get_manifest,
    head_manifest,
    push_blob,
    push_image,
    push_index,
    sha256_digest,
)

REPO = "team/app"


@pytest.fixture
def standin(ecr_factory) -> EcrStandIn:
    """A stand-in where ``team/app`` exists."""
    return ecr_factory(repositories=[REPO])


def errors(response: httpx.Response) -> list[tuple[str, str]]:
    return [(e["code"], e["message"]) for e in response.json()["errors"]]


def upload_session(http: httpx.Client, base: str, repo: str = REPO) -> httpx.URL:
    started = http.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    return started.url.join(started.headers["Location"])


def with_digest(location: httpx.URL, digest: str) -> httpx.URL:
    return httpx.URL(str(location)).copy_add_param("digest", digest)


def artifact_manifest(subject, *, artifact_type: str, config_digest: str, layer: bytes) -> bytes:
    """An OCI 1.1 artifact manifest whose subject is ``subject`` (an :class:`Image`)."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": 2},
            "layers": [{"mediaType": "application/json", "digest": sha256_digest(layer), "size": len(layer)}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        },
        indent=2,
    ).encode()


# ---------------------------------------------------------------------- authentication


def test_unauthenticated_request_gets_ecr_basic_challenge(standin):
    """NVIDIA/enroot#59: 401, ``Www-Authenticate: Basic realm=...,service="ecr.amazonaws.com"``,
    body ``Not Authorized``."""
    for method, path in (("GET", "/v2/"), ("HEAD", f"/v2/{REPO}/manifests/v1"), ("POST", f"/v2/{REPO}/blobs/uploads/")):
        response = httpx.request(method, standin.url + path)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == f'Basic realm="{standin.url}/",service="ecr.amazonaws.com"'
        if method != "HEAD":
            assert response.text.strip() == "Not Authorized"


def test_password_comes_from_its_own_get_authorization_token(standin):
    """ecr-facts 1 (API_GetAuthorizationToken, registry_auth.md): the token is base64 ``AWS:<password>``,
    sent unchanged as Basic auth; nothing else is accepted (another user, a made-up password)."""
    data = standin.client().get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == standin.url
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    header = {"Authorization": f"Basic {data['authorizationToken']}"}
    assert httpx.get(f"{standin.url}/v2/", headers=header).status_code == 200
    assert httpx.get(f"{standin.url}/v2/", auth=("admin", password)).status_code == 401
    assert httpx.get(f"{standin.url}/v2/", auth=("AWS", "123456789012-auth-token")).status_code == 401  # moto's


def test_token_lasts_twelve_hours_by_default(standin):
    """API_GetAuthorizationToken: "The authorization token is valid for 12 hours" (``expiresAt``)."""
    data = standin.client().get_authorization_token()["authorizationData"][0]
    issued = standin.api_calls[-1]
    assert issued.op == "GetAuthorizationToken"
    remaining = data["expiresAt"].timestamp() - time.time()
    assert 11.9 * 3600 < remaining <= 12 * 3600


def test_expired_token_is_denied(ecr_factory):
    """aws/aws-cli#6580: an expired token is refused with ``denied: Your authorization token has expired.
    Reauthenticate and try again.`` (code DENIED, 403); a fresh token works again."""
    ecr = ecr_factory(token_ttl=0)  # every password is expired when issued
    ecr.create_repository(REPO)
    response = httpx.get(f"{ecr.url}/v2/", auth=ecr.auth)
    assert response.status_code == 403
    assert errors(response) == [("DENIED", "Your authorization token has expired. Reauthenticate and try again.")]

    live = ecr_factory()
    auth = live.auth
    assert httpx.get(f"{live.url}/v2/", auth=auth).status_code == 200
    live.expire_tokens()
    assert httpx.get(f"{live.url}/v2/", auth=auth).status_code == 403
    assert httpx.get(f"{live.url}/v2/", auth=live.auth).status_code == 200  # credentials fetch a new token


# ---------------------------------------------------------------------- repositories must exist


def test_push_or_pull_on_repository_not_created_is_name_unknown(standin):
    """docker/cli#5275, aws-actions/amazon-ecr-login#166: ``404 NAME_UNKNOWN`` "The repository with name
    'x' does not exist in the registry with id '<account>'" on every request; distribution would create it."""
    image = build_image(seed=11)
    expected = [
        ("NAME_UNKNOWN", "The repository with name 'other/app' does not exist in the registry with id '123456789012'")
    ]
    with standin.http() as http:
        for method, path in (
            ("POST", "/v2/other/app/blobs/uploads/"),
            ("GET", "/v2/other/app/manifests/v1"),
            ("HEAD", f"/v2/other/app/blobs/{image.config_digest}"),
            ("PUT", "/v2/other/app/manifests/v1"),
        ):
            response = http.request(method, standin.url + path, content=image.manifest if method == "PUT" else None)
            assert response.status_code == 404, (method, path)
            if method != "HEAD":
                assert errors(response) == expected
        assert httpx.get(f"{standin.registry.url}/v2/_catalog").json()["repositories"] == []  # nothing reached it
        standin.client().create_repository(repositoryName="other/app")
        assert push_image(standin.url, "other/app", image, tag="v1", client=http) == image.digest
    assert httpx.get(f"{standin.registry.url}/v2/_catalog").json()["repositories"] == ["other/app"]


# ---------------------------------------------------------------------- tag immutability


def test_immutable_tag_is_refused_even_for_the_same_digest(ecr_factory):
    """userguide image-tag-mutability.html; aws/containers-roadmap#2179, #2380: re-pushing an existing tag
    fails with ``TAG_INVALID`` even when the digest is identical. Pushing by digest or a new tag works."""
    ecr = ecr_factory()
    ecr.create_repository(REPO, mutability="IMMUTABLE")
    image = build_image(seed=12)
    with ecr.http() as http:
        push_image(ecr.url, REPO, image, tag="v1", client=http)
        again = http.put(
            f"{ecr.url}/v2/{REPO}/manifests/v1", content=image.manifest, headers={"Content-Type": image.media_type}
        )
        assert again.status_code == 400
        assert errors(again) == [
            (
                "TAG_INVALID",
                "The image tag 'v1' already exists in the 'team/app' repository and cannot be overwritten "
                "because the repository is immutable.",
            )
        ]
        assert (
            http.put(
                f"{ecr.url}/v2/{REPO}/manifests/{image.digest}",
                content=image.manifest,
                headers={"Content-Type": image.media_type},
            ).status_code
            == 201
        )
        assert (
            http.put(
                f"{ecr.url}/v2/{REPO}/manifests/v2", content=image.manifest, headers={"Content-Type": image.media_type}
            ).status_code
            == 201
        )
    assert ecr.tags(REPO) == {"v1": image.digest, "v2": image.digest}


@pytest.mark.parametrize(
    ("mutability", "filters", "mutable_tags", "immutable_tags"),
    [
        ("IMMUTABLE_WITH_EXCLUSION", ["sha256-*", "latest"], ["sha256-abc.sig", "latest"], ["v1", "latest-1"]),
        ("MUTABLE_WITH_EXCLUSION", ["release-*"], ["v1", "latest"], ["release-1", "release-"]),
    ],
)
def test_mutability_exclusion_filters(ecr_factory, mutability, filters, mutable_tags, immutable_tags):
    """API_ImageTagMutabilityExclusionFilter (WILDCARD) and userguide image-tag-mutability.html: with
    ``IMMUTABLE_WITH_EXCLUSION`` matching tags stay mutable; with ``MUTABLE_WITH_EXCLUSION`` matching tags
    are immutable ("...because the tag is immutable")."""
    ecr = ecr_factory()
    ecr.create_repository(REPO, mutability=mutability, exclusions=filters)
    first, second = build_image(seed=13), build_image(seed=14)
    with ecr.http() as http:
        for tag in mutable_tags + immutable_tags:
            push_image(ecr.url, REPO, first, tag=tag, client=http)
        for tag in mutable_tags:
            push_image(ecr.url, REPO, second, tag=tag, client=http)
        for tag in immutable_tags:
            refused = http.put(
                f"{ecr.url}/v2/{REPO}/manifests/{tag}",
                content=second.manifest,
                headers={"Content-Type": second.media_type},
            )
            assert refused.status_code == 400, tag
            assert errors(refused)[0][1].endswith("cannot be overwritten because the tag is immutable.")
    tags = ecr.tags(REPO)
    assert {t: tags[t] for t in mutable_tags} == dict.fromkeys(mutable_tags, second.digest)
    assert {t: tags[t] for t in immutable_tags} == dict.fromkeys(immutable_tags, first.digest)


def test_changing_mutability_applies_to_the_next_push(standin):
    """PutImageTagMutability changes the rule the registry face applies (one store for both faces)."""
    image, other = build_image(seed=15), build_image(seed=16)
    with standin.http() as http:
        push_image(standin.url, REPO, image, tag="v1", client=http)
        standin.client().put_image_tag_mutability(repositoryName=REPO, imageTagMutability="IMMUTABLE")
        put = http.put(
            f"{standin.url}/v2/{REPO}/manifests/v1", content=other.manifest, headers={"Content-Type": other.media_type}
        )
        assert put.status_code == 400
        standin.client().put_image_tag_mutability(repositoryName=REPO, imageTagMutability="MUTABLE")
        push_image(standin.url, REPO, other, tag="v1", client=http)
    assert standin.tags(REPO) == {"v1": other.digest}


# ---------------------------------------------------------------------- manifest rules


def padded_manifest(image, total: int) -> bytes:
    """An OCI manifest of exactly ``total`` bytes referencing ``image``'s blobs (padded with an annotation)."""
    doc = json.loads(image.manifest)
    doc["annotations"] = {"pad": ""}
    body = json.dumps(doc).encode()
    doc["annotations"]["pad"] = "x" * (total - len(body))
    body = json.dumps(doc).encode()
    assert len(body) == total
    return body


def test_manifest_larger_than_4_mib_is_refused(standin):
    """PutImage ``imageManifest`` max 4,194,304 bytes (service model, ECR quotas); distribution caps at 4 MiB
    too. The refusal happens in front: distribution never sees the body."""
    image = build_image(seed=17)
    with standin.http() as http:
        push_image(standin.url, REPO, image, client=http)
        largest = padded_manifest(image, MANIFEST_LIMIT)
        too_big = padded_manifest(image, MANIFEST_LIMIT + 1)
        refused = http.put(
            f"{standin.url}/v2/{REPO}/manifests/big", content=too_big, headers={"Content-Type": OCI_MANIFEST}
        )
        assert refused.status_code == 400
        assert errors(refused)[0][0] == "MANIFEST_INVALID"
        # a streamed (chunked) body is measured too
        refused = http.put(
            f"{standin.url}/v2/{REPO}/manifests/big",
            content=iter([too_big[:1000], too_big[1000:]]),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert refused.status_code == 400
        accepted = http.put(
            f"{standin.url}/v2/{REPO}/manifests/big", content=largest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert accepted.status_code == 201, accepted.text
    assert standin.tags(REPO) == {"big": sha256_digest(largest)}


def test_index_with_missing_children_is_refused_with_ecr_message(standin):
    """int128/docker-manifest-create-action#63: ``MANIFEST_BLOB_UNKNOWN`` "Images with digests '[...]' required
    for pushing image into repository with name '...' in the registry with id '...' do not exist". A child
    present in another repository does not count; once the children are pushed the index goes in."""
    amd64, arm64 = build_image("linux/amd64", seed=18), build_image("linux/arm64", seed=18)
    index = build_index([amd64, arm64])
    standin.create_repository("team/other")
    with standin.http() as http:
        push_image(standin.url, "team/other", arm64, client=http)
        push_image(standin.url, REPO, amd64, client=http)
        refused = http.put(
            f"{standin.url}/v2/{REPO}/manifests/v1", content=index.manifest, headers={"Content-Type": index.media_type}
        )
        assert refused.status_code == 400
        assert errors(refused) == [
            (
                "MANIFEST_BLOB_UNKNOWN",
                f"Images with digests '[{arm64.digest}]' required for pushing image into repository with name "
                "'team/app' in the registry with id '123456789012' do not exist",
            )
        ]
        assert push_index(standin.url, REPO, index, tag="v1", client=http) == index.digest
    assert standin.tags(REPO) == {"v1": index.digest}


def test_manifest_put_answer_has_digest_and_no_location(standin):
    """rust-oci-client#33: a successful manifest PUT on ECR may have no ``Location``; ``Docker-Content-Digest``
    is there. Clients must not depend on Location."""
    image = build_image(seed=19)
    with standin.http() as http:
        push_image(standin.url, REPO, image, client=http)
        put = http.put(
            f"{standin.url}/v2/{REPO}/manifests/v1", content=image.manifest, headers={"Content-Type": image.media_type}
        )
    assert put.status_code == 201
    assert put.headers["docker-content-digest"] == image.digest
    assert "location" not in put.headers


def test_tags_and_existence_come_from_the_records(standin):
    """One store: a tag removed through BatchDeleteImage is gone from the registry face (GET 404
    ``MANIFEST_UNKNOWN`` "Requested image not found", tags/list) while the image keeps its other tag."""
    image = build_image(seed=20)
    with standin.http() as http:
        push_image(standin.url, REPO, image, tag="v1", client=http)
        push_image(standin.url, REPO, image, tag="stable", client=http)
        standin.client().batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "v1"}])
        gone = http.get(f"{standin.url}/v2/{REPO}/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert gone.status_code == 404
        assert errors(gone) == [("MANIFEST_UNKNOWN", "Requested image not found")]
        assert head_manifest(standin.url, REPO, "stable", client=http) == image.digest
        assert http.get(f"{standin.url}/v2/{REPO}/tags/list").json() == {"name": REPO, "tags": ["stable"]}
        page = http.get(f"{standin.url}/v2/{REPO}/tags/list", params={"n": 1})
        assert page.json()["tags"] == ["stable"] and "link" not in page.headers


def test_registry_delete_refuses_an_index_child(standin):
    """oras-project/oras#1228: ECR "will protect against deletion of content listed in an index". Deleting
    the index first, then the child, works (202); the child is then gone from both faces."""
    index = build_index([build_image("linux/amd64", seed=21), build_image("linux/arm64", seed=21)])
    child = index.images[0].digest
    with standin.http() as http:
        push_index(standin.url, REPO, index, tag="v1", client=http)
        refused = http.delete(f"{standin.url}/v2/{REPO}/manifests/{child}")
        assert refused.status_code == 405
        assert errors(refused)[0][1] == f"Requested image referenced by manifest list: [{index.digest}]"
        assert http.delete(f"{standin.url}/v2/{REPO}/manifests/{index.digest}").status_code == 202
        assert http.delete(f"{standin.url}/v2/{REPO}/manifests/{child}").status_code == 202
        assert head_manifest(standin.url, REPO, child, client=http) is None
    assert child not in standin.images(REPO)
    assert httpx.head(f"{standin.registry.url}/v2/{REPO}/manifests/{child}").status_code == 404


# ---------------------------------------------------------------------- uploads


def test_zero_length_blob_upload_is_refused(standin):
    """radius-project/radius#7855: ``400 BLOB_UPLOAD_INVALID`` "The upload with id '<id>' in the repository with
    name '<repo>' in registry with id '<account>' cannot be completed because it does not have any parts."
    (distribution itself accepts it)."""
    empty = sha256_digest(b"")
    with standin.http() as http:
        location = upload_session(http, standin.url)
        upload_id = location.path.rsplit("/", 1)[1]
        refused = http.put(with_digest(location, empty), content=b"")
        assert refused.status_code == 400
        assert errors(refused) == [
            (
                "BLOB_UPLOAD_INVALID",
                f"The upload with id '{upload_id}' in the repository with name 'team/app' in registry with id "
                "'123456789012' cannot be completed because it does not have any parts.",
            )
        ]
        assert http.head(f"{standin.url}/v2/{REPO}/blobs/{empty}").status_code == 404


def test_multi_chunk_patch_follows_ecr_part_rules(standin):
    """Chunked upload on ECR: each PATCH answers 201 (regclient#81), ``Range`` stays at the first chunk
    (aws/containers-roadmap#2831), parts under 5 MiB except the last are refused ("All layer parts except
    the last part should be at least 5MB", dotnet/sdk-container-builds#424), a part must start where the
    last ended (416 "First byte of the layer part is X instead of Y", apple/container#1895)."""
    chunk = PART_MINIMUM
    data = bytes(range(256)) * ((2 * chunk + 1000) // 256 + 1)
    data = data[: 2 * chunk + 1000]
    digest = sha256_digest(data)
    with standin.http() as http:
        location = upload_session(http, standin.url)
        first = http.patch(location, content=data[:chunk], headers={"Content-Range": f"0-{chunk - 1}"})
        assert first.status_code == 201
        assert first.headers["range"] == f"0-{chunk - 1}"
        location = first.url.join(first.headers["Location"])
        wrong = http.patch(location, content=data[:chunk], headers={"Content-Range": f"0-{chunk - 1}"})
        assert wrong.status_code == 416
        assert errors(wrong) == [("BLOB_UPLOAD_INVALID", f"First byte of the layer part is 0 instead of {chunk}")]
        second = http.patch(
            location, content=data[chunk : 2 * chunk], headers={"Content-Range": f"{chunk}-{2 * chunk - 1}"}
        )
        assert second.status_code == 201
        assert second.headers["range"] == f"0-{chunk - 1}"  # stale, as on ECR
        location = second.url.join(second.headers["Location"])
        done = http.put(
            with_digest(location, digest),
            content=data[2 * chunk :],
            headers={"Content-Range": f"{2 * chunk}-{len(data) - 1}"},
        )
        assert done.status_code == 201, done.text
        assert get_blob(standin.url, REPO, digest, client=http) == data

        # a small part followed by another part: refused when the next part arrives
        small = data[:1000]
        location = upload_session(http, standin.url)
        part = http.patch(location, content=small, headers={"Content-Range": "0-999"})
        assert part.status_code == 201
        location = part.url.join(part.headers["Location"])
        refused = http.patch(location, content=data[1000:2000], headers={"Content-Range": "1000-1999"})
        assert refused.status_code == 400
        assert errors(refused) == [
            ("BLOB_UPLOAD_INVALID", "All layer parts except the last part should be at least 5MB")
        ]
        refused = http.put(with_digest(location, sha256_digest(data[:2000])), content=data[1000:2000])
        assert refused.status_code == 400
        # ...but a small single part is the last part: completing with an empty PUT works
        finished = http.put(with_digest(location, sha256_digest(small)), content=b"")
        assert finished.status_code == 201, finished.text


def test_single_streaming_patch_then_put_works(standin):
    """ecr-facts 2: one streaming PATCH (chunked, no Content-Range) then ``PUT ?digest=`` works on ECR
    (go-containerregistry ``streamBlob``/``commitBlob``); a monolithic POST-then-PUT works too."""
    data = bytes(range(256)) * 4096  # 1 MiB
    digest = sha256_digest(data)
    with standin.http() as http:
        location = upload_session(http, standin.url)
        streamed = http.patch(location, content=iter([data[:300_000], data[300_000:]]))
        assert streamed.status_code == 201
        location = streamed.url.join(streamed.headers["Location"])
        assert http.put(with_digest(location, digest)).status_code == 201
        other = data[::-1]
        assert push_blob(standin.url, REPO, sha256_digest(other), other, client=http) is True
        assert get_blob(standin.url, REPO, sha256_digest(other), client=http) == other


def test_single_request_post_with_digest_opens_a_session(standin):
    """ecr-facts 2: a single-request ``POST ?digest=`` is undocumented for ECR; the stand-in answers 202 with
    an upload session (as the spec allows), so clients must continue with a PUT."""
    data = b"single request"
    with standin.http() as http:
        answer = http.post(
            f"{standin.url}/v2/{REPO}/blobs/uploads/", params={"digest": sha256_digest(data)}, content=data
        )
        assert answer.status_code == 202
        assert "/blobs/uploads/" in answer.headers["Location"]
        assert http.head(f"{standin.url}/v2/{REPO}/blobs/{sha256_digest(data)}").status_code == 404


def test_wrong_digest_is_blob_upload_invalid(standin):
    """dotnet/sdk-container-builds#424: a digest that does not match the bytes gives ``BLOB_UPLOAD_INVALID``
    "None of the provided layer digests match…" (distribution says DIGEST_INVALID)."""
    with standin.http() as http:
        location = upload_session(http, standin.url)
        refused = http.put(with_digest(location, sha256_digest(b"other")), content=b"data")
    assert refused.status_code == 400
    assert errors(refused)[0][0] == "BLOB_UPLOAD_INVALID"
    assert errors(refused)[0][1].startswith("None of the provided layer digests match")


# ---------------------------------------------------------------------- throttling


def test_manifest_puts_are_throttled_at_the_put_image_rate(standin):
    """ECR service quotas: PutImage 10 per second per account; over it ``429 TOOMANYREQUESTS "Rate exceeded"``
    (google/go-containerregistry#750). The window is made deterministic with a fixed clock."""
    assert standin.put_image_rate == 10
    now = [1000.0]
    standin.limiter.clock = lambda: now[0]
    images = [build_image(seed=100 + i, layers=1, layer_size=16) for i in range(11)]
    with standin.http() as http:
        for image in images:
            for digest in image.blob_digests:
                push_blob(standin.url, REPO, digest, image.blobs[digest], client=http)

        def put(image, tag):
            return http.put(
                f"{standin.url}/v2/{REPO}/manifests/{tag}",
                content=image.manifest,
                headers={"Content-Type": image.media_type},
            )

        assert [put(image, f"t{i}").status_code for i, image in enumerate(images[:10])] == [201] * 10
        throttled = put(images[10], "t10")
        assert throttled.status_code == 429
        assert errors(throttled) == [("TOOMANYREQUESTS", "Rate exceeded")]
        now[0] += 1.0
        assert put(images[10], "t10").status_code == 201
    assert standin.throttled == 1
    assert standin.count(op="PutImage") == 12 and standin.count(op="PutImage", status=429) == 1


def test_put_image_rate_is_configurable(ecr_factory):
    """The quota is adjustable on ECR; the stand-in takes ``put_image_rate`` (None: unlimited)."""
    ecr = ecr_factory(put_image_rate=1)
    ecr.create_repository(REPO)
    ecr.limiter.clock = lambda: 5.0
    first, second = build_image(seed=30), build_image(seed=31)
    with ecr.http() as http:
        push_image(ecr.url, REPO, first, client=http)
        for digest in second.blob_digests:
            push_blob(ecr.url, REPO, digest, second.blobs[digest], client=http)
        refused = http.put(
            f"{ecr.url}/v2/{REPO}/manifests/{second.digest}",
            content=second.manifest,
            headers={"Content-Type": second.media_type},
        )
        assert refused.status_code == 429
        ecr.put_image_rate = None
        push_image(ecr.url, REPO, second, client=http)


# ---------------------------------------------------------------------- cross-repository mount


def test_mount_only_when_blob_mounting_is_enabled(standin):
    """blob-mounting.html and aws/containers-roadmap#2860: ``?mount=&from=`` mounts only when the account
    setting BLOB_MOUNTING is ENABLED, and only a blob a committed manifest in the source references, between
    repositories with the same encryption; otherwise ``202`` and an upload session."""
    image = build_image(seed=40)
    layer = image.blob_digests[1]
    loose = b"uploaded but never referenced"
    standin.create_repository("team/target")
    standin.create_repository("team/kms", encryption={"encryptionType": "KMS"})
    with standin.http() as http:
        push_image(standin.url, REPO, image, tag="v1", client=http)
        push_blob(standin.url, REPO, sha256_digest(loose), loose, client=http)

        def mount(digest, target="team/target"):
            return http.post(f"{standin.url}/v2/{target}/blobs/uploads/", params={"mount": digest, "from": REPO})

        disabled = mount(layer)
        assert disabled.status_code == 202 and "/blobs/uploads/" in disabled.headers["Location"]
        assert http.head(f"{standin.url}/v2/team/target/blobs/{layer}").status_code == 404

        standin.client().put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
        mounted = mount(layer)
        assert mounted.status_code == 201
        assert mounted.headers["Location"].endswith(f"/v2/team/target/blobs/{layer}")
        assert http.head(f"{standin.url}/v2/team/target/blobs/{layer}").status_code == 200
        assert mount(sha256_digest(loose)).status_code == 202  # no manifest references it
        assert mount(image.blob_digests[0], target="team/kms").status_code == 202  # other encryption


# ---------------------------------------------------------------------- blobs


def test_blob_get_redirects_to_a_layer_bucket_that_refuses_authorization(standin):
    """ECR serves layer bytes from S3 (``prod-<region>-starport-layer-bucket``, vpc-endpoints.md): blob GET
    answers a redirect to another origin. httpx drops Authorization across origins (``_redirect_headers``);
    a client that forwards it is refused as S3 refuses two auth mechanisms. HEAD is answered directly."""
    image = build_image(seed=41)
    config = image.config_digest
    with standin.http() as http:
        push_image(standin.url, REPO, image, client=http)
        redirect = http.get(f"{standin.url}/v2/{REPO}/blobs/{config}", follow_redirects=False)
        assert redirect.status_code == 307
        location = redirect.headers["Location"]
        assert location.startswith(standin.layer_url + "/prod-us-east-1-starport-layer-bucket/")
        assert http.head(f"{standin.url}/v2/{REPO}/blobs/{config}").status_code == 200
        assert get_blob(standin.url, REPO, config, client=http) == image.config_bytes
    both = httpx.get(location, auth=standin.auth)
    assert both.status_code == 400 and "<Code>InvalidArgument</Code>" in both.text
    assert httpx.get(location).content == image.config_bytes
    assert httpx.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
    assert standin.count("GET", "/blobs/") == 2 and standin.count(face="layer") == 4
    assert standin.count(op="GetDownloadUrlForLayer") == 2


def test_layer_delete_is_unsupported(standin):
    """ECR has no layer deletion (only BatchDeleteImage of images): ``DELETE /blobs/`` is refused."""
    image = build_image(seed=42)
    with standin.http() as http:
        push_image(standin.url, REPO, image, client=http)
        assert http.delete(f"{standin.url}/v2/{REPO}/blobs/{image.config_digest}").status_code == 405
        assert http.head(f"{standin.url}/v2/{REPO}/blobs/{image.config_digest}").status_code == 200


# ---------------------------------------------------------------------- referrers


def test_referrers_api_answers_from_what_was_pushed(standin):
    """ecr-facts 3 (OCI 1.1 on ECR since 2024-06-27) and distribution-spec 1.1: a manifest PUT with a
    ``subject`` answers ``OCI-Subject``; ``GET /v2/<name>/referrers/<digest>`` is an OCI index of the
    referrers' descriptors (artifactType, annotations), filtered by ``artifactType`` with
    ``OCI-Filters-Applied``; an unknown subject has an empty list, not 404."""
    image = build_image(seed=43)
    empty = b"{}"
    signature = artifact_manifest(
        image,
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        config_digest=sha256_digest(empty),
        layer=b'{"sig": 1}',
    )
    sbom = artifact_manifest(
        image, artifact_type="application/spdx+json", config_digest=sha256_digest(empty), layer=b'{"spdx": 1}'
    )
    with standin.http() as http:
        push_image(standin.url, REPO, image, tag="v1", client=http)
        push_blob(standin.url, REPO, sha256_digest(empty), empty, client=http)
        for body, payload in ((signature, b'{"sig": 1}'), (sbom, b'{"spdx": 1}')):
            push_blob(standin.url, REPO, sha256_digest(payload), payload, client=http)
            put = http.put(
                f"{standin.url}/v2/{REPO}/manifests/{sha256_digest(body)}",
                content=body,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert put.status_code == 201
            assert put.headers["OCI-Subject"] == image.digest

        answer = http.get(f"{standin.url}/v2/{REPO}/referrers/{image.digest}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/vnd.oci.image.index.v1+json"
        index = answer.json()
        assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert index["manifests"] == [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256_digest(body),
                "size": len(body),
                "artifactType": kind,
                "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
            }
            for body, kind in (
                (signature, "application/vnd.dev.cosign.artifact.sig.v1+json"),
                (sbom, "application/spdx+json"),
            )
        ]
        filtered = http.get(
            f"{standin.url}/v2/{REPO}/referrers/{image.digest}", params={"artifactType": "application/spdx+json"}
        )
        assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
        assert [d["digest"] for d in filtered.json()["manifests"]] == [sha256_digest(sbom)]
        unknown = http.get(f"{standin.url}/v2/{REPO}/referrers/sha256:{'0' * 64}")
        assert unknown.status_code == 200 and unknown.json()["manifests"] == []
        assert http.get(f"{standin.url}/v2/{REPO}/referrers/latest").status_code == 400
    details = standin.client().describe_images(repositoryName=REPO, imageIds=[{"imageDigest": sha256_digest(sbom)}])
    assert details["imageDetails"][0]["subjectManifestDigest"] == image.digest


def test_referrers_proxy_gives_a_plain_upstream_the_referrers_api(registry, proxy_factory):
    """For upstream registries (a later issue copies signatures): :class:`ReferrersProxy` passes everything
    through (no ECR rules, repositories created on push), records manifests pushed through it and answers
    the referrers API from them; content pushed straight to the registry can be recorded by hand."""
    proxy = proxy_factory(registry, referrers=True, bearer=True)
    auth_client = httpx.Client(auth=BearerAuth())
    image = build_image(seed=44)
    empty = b"{}"
    signature = artifact_manifest(
        image, artifact_type="application/example", config_digest=sha256_digest(empty), layer=b"sig"
    )
    with auth_client as http:
        push_image(proxy.url, "library/app", image, tag="v1", client=http)
        for blob in (empty, b"sig"):
            push_blob(proxy.url, "library/app", sha256_digest(blob), blob, client=http)
        put = http.put(
            f"{proxy.url}/v2/library/app/manifests/sig", content=signature, headers={"Content-Type": OCI_MANIFEST}
        )
        assert put.status_code == 201 and put.headers["OCI-Subject"] == image.digest
        assert "location" in put.headers  # untouched pass-through
        referrers = http.get(f"{proxy.url}/v2/library/app/referrers/{image.digest}").json()["manifests"]
        assert [d["digest"] for d in referrers] == [sha256_digest(signature)]
        assert get_manifest(proxy.url, "library/app", "v1", client=http)[2] == image.digest

    # pushed around the proxy: recorded by hand
    other = build_image(seed=45)
    push_image(registry.url, "library/other", other, tag="v1")
    note = artifact_manifest(other, artifact_type="application/example", config_digest=sha256_digest(empty), layer=b"n")
    proxy.record_manifest("library/other", note, OCI_MANIFEST)
    with httpx.Client(auth=BearerAuth()) as http:
        answer = http.get(f"{proxy.url}/v2/library/other/referrers/{other.digest}").json()
    assert [d["digest"] for d in answer["manifests"]] == [sha256_digest(note)]
    assert proxy.count("GET", "/referrers/", status=200) == 2
