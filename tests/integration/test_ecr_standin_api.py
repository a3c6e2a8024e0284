"""The ECR stand-in's ECR API face, through real boto3, and its agreement with the registry face.

Every answer is also held to botocore's service model (``ecr/2015-09-21/service-2.json``): botocore
parses responses leniently (unknown keys are dropped), so :func:`assert_shape` validates the JSON the
stand-in actually sent against the operation's output shape. Sources are in each test's docstring.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

from tests.support.ecr import EcrStandIn
from tests.support.images import (
    MANIFEST_ACCEPT,
    build_image,
    build_index,
    get_manifest,
    head_manifest,
    push_image,
    push_index,
    push_manifest,
    sha256_digest,
)

REPO = "team/app"


@pytest.fixture
def standin(ecr_factory) -> EcrStandIn:
    """A stand-in where ``team/app`` exists."""
    return ecr_factory(repositories=[REPO])


def assert_shape(ecr: EcrStandIn, op: str | None = None) -> dict:
    """The last API answer (of ``op``) as sent, validated against the service model's output shape."""
    call = next(c for c in reversed(ecr.api_calls) if op is None or c.op == op)
    assert call.status == 200, call
    shape = ecr.client().meta.service_model.operation_model(call.op).output_shape
    report = ParamValidator().validate(call.response, shape)
    assert not report.has_errors(), report.generate_report()
    return call.response


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def variant(image, n: int) -> tuple[bytes, str]:
    """Manifest bytes (and digest) of ``image`` with an annotation ``n``: a distinct image over the same blobs."""
    doc = image.json
    doc["annotations"] = {"n": str(n)}
    body = json.dumps(doc, indent=2).encode()
    return body, sha256_digest(body)


def push_sample(ecr: EcrStandIn, tag: str = "v1", seed: int = 1, *, oci: bool = True):
    """A two-platform index (or Docker manifest list) with attestations, pushed through the registry face by tag."""
    images = [build_image("linux/amd64", seed=seed, oci=oci), build_image("linux/arm64/v8", seed=seed, oci=oci)]
    index = build_index(images, attestations=True, oci=oci)
    with ecr.http() as http:
        push_index(ecr.url, REPO, index, tag=tag, client=http)
    return index


# ---------------------------------------------------------------------- wiring


def test_ecr_fixture_sends_only_ecr_to_the_stand_in(ecr):
    """The ``ecr`` fixture: boto3's ``ecr`` client (no endpoint argument) reaches the stand-in through
    ``AWS_ENDPOINT_URL_ECR``; other services stay on moto."""
    boto3.client("ecr").create_repository(repositoryName="fixture/app")
    assert "fixture/app" in ecr.client().describe_repositories()["repositories"][0]["repositoryName"]
    boto3.client("dynamodb").list_tables()  # answered by moto
    assert {c.op for c in ecr.api_calls} == {"CreateRepository", "DescribeRepositories"}
    assert all(c.region == "us-east-1" for c in ecr.api_calls)
    with ecr.http() as http:
        push_image(ecr.url, "fixture/app", build_image(seed=2), tag="v1", client=http)


def test_requests_must_be_signed_and_name_a_known_action(standin):
    """AWS JSON 1.1: an unsigned request is refused (MissingAuthenticationTokenException), an unknown
    ``X-Amz-Target`` is UnknownOperationException."""
    target = {
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
        "Content-Type": "application/x-amz-json-1.1",
    }
    unsigned = httpx.post(standin.api_url, headers=target, content=b"{}")
    assert unsigned.status_code == 403 and unsigned.json()["__type"] == "MissingAuthenticationTokenException"
    unknown = httpx.post(
        standin.api_url, headers={**target, "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.PutImage"}
    )
    assert unknown.status_code == 400 and unknown.json()["__type"] == "UnknownOperationException"


# ---------------------------------------------------------------------- repositories


def test_repository_lifecycle_shapes_and_errors(standin):
    """CreateRepository/DescribeRepositories/DeleteRepository shapes (service model); errors
    RepositoryAlreadyExistsException, RepositoryNotFoundException, RepositoryNotEmptyException,
    InvalidParameterException with ECR's wording (moto's copies, trek10inc/ecr-cleaner#8)."""
    client = standin.client()
    created = client.create_repository(
        repositoryName="team/web",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "sha256-*"}],
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
        tags=[{"Key": "managed-by", "Value": "ecr-mirror"}],
    )["repository"]
    assert_shape(standin, "CreateRepository")
    assert created["repositoryArn"] == "arn:aws:ecr:us-east-1:123456789012:repository/team/web"
    assert created["repositoryUri"] == f"{standin.host}/team/web"
    assert created["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert created["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "sha256-*"}]
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}

    with pytest.raises(ClientError) as exc:
        client.create_repository(repositoryName="team/web")
    assert error_of(exc) == (
        "RepositoryAlreadyExistsException",
        "The repository with name 'team/web' already exists in the registry with id '123456789012'",
    )
    with pytest.raises(ClientError) as exc:
        client.create_repository(repositoryName="Team/Web")
    assert error_of(exc)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        client.create_repository(repositoryName="team/x", imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    assert error_of(exc)[0] == "InvalidParameterException"  # exclusion mode without filters
    with pytest.raises(ClientError) as exc:
        client.describe_repositories(repositoryNames=["team/web", "team/none"])
    assert error_of(exc) == (
        "RepositoryNotFoundException",
        "The repository with name 'team/none' does not exist in the registry with id '123456789012'",
    )

    described = client.describe_repositories(repositoryNames=["team/web"])["repositories"]
    assert_shape(standin, "DescribeRepositories")
    assert described == [created]
    assert client.list_tags_for_resource(resourceArn=created["repositoryArn"])["tags"] == [
        {"Key": "managed-by", "Value": "ecr-mirror"}
    ]

    push_sample(standin)
    with pytest.raises(ClientError) as exc:
        client.delete_repository(repositoryName=REPO)
    assert error_of(exc)[0] == "RepositoryNotEmptyException"
    deleted = client.delete_repository(repositoryName=REPO, force=True)["repository"]
    assert_shape(standin, "DeleteRepository")
    assert deleted["repositoryName"] == REPO


def test_forced_delete_empties_the_registry_too(standin):
    """DeleteRepository ``force``: "Amazon ECR delete all of its contents": the registry face then answers
    NAME_UNKNOWN, and a repository created again under that name starts empty (no images, no blobs)."""
    index = push_sample(standin)
    layer = index.images[0].blob_digests[1]
    standin.client().delete_repository(repositoryName=REPO, force=True)
    with standin.http() as http:
        gone = http.get(f"{standin.url}/v2/{REPO}/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert gone.status_code == 404 and gone.json()["errors"][0]["code"] == "NAME_UNKNOWN"
        standin.client().create_repository(repositoryName=REPO)
        assert http.head(f"{standin.url}/v2/{REPO}/blobs/{layer}").status_code == 404
        assert head_manifest(standin.url, REPO, index.digest, client=http) is None
    assert standin.client().list_images(repositoryName=REPO)["imageIds"] == []
    assert httpx.head(f"{standin.registry.url}/v2/{REPO}/manifests/{index.digest}").status_code == 404


def test_describe_repositories_pagination(standin):
    """DescribeRepositories: maxResults 1..1000 with nextToken; not allowed together with repositoryNames
    (API reference)."""
    client = standin.client()
    for i in range(4):
        client.create_repository(repositoryName=f"team/r{i}")
    first = client.describe_repositories(maxResults=2)
    assert_shape(standin)
    assert len(first["repositories"]) == 2 and first["nextToken"]
    pages = list(client.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 2}))
    names = [r["repositoryName"] for page in pages for r in page["repositories"]]
    assert names == [REPO, "team/r0", "team/r1", "team/r2", "team/r3"]
    assert len(pages) == 3
    for bad in ({"maxResults": 1001}, {"repositoryNames": [REPO], "maxResults": 2}, {"nextToken": "nope"}):
        with pytest.raises(ClientError) as exc:
            client.describe_repositories(**bad)
        assert error_of(exc)[0] == "InvalidParameterException", bad


def test_put_image_tag_mutability_and_tags(standin):
    """PutImageTagMutability (shape; filters only with *_WITH_EXCLUSION, WILDCARD, pattern
    ^[0-9a-zA-Z._*-]{1,128}$, at most 5), TagResource/UntagResource/ListTagsForResource."""
    client = standin.client()
    answer = client.put_image_tag_mutability(
        repositoryName=REPO,
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}],
    )
    assert_shape(standin)
    assert answer["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert answer["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "release-*"}]
    bad_calls = [
        {
            "imageTagMutability": "MUTABLE",
            "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "x"}],
        },
        {
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "bad/tag"}],
        },
        {
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": f"f{i}"} for i in range(6)],
        },
        {"imageTagMutability": "SOMETIMES"},
    ]
    for bad in bad_calls:
        with pytest.raises(ClientError) as exc:
            client.put_image_tag_mutability(repositoryName=REPO, **bad)
        assert error_of(exc)[0] == "InvalidParameterException", bad
    with pytest.raises(ClientError) as exc:
        client.put_image_tag_mutability(repositoryName="team/none", imageTagMutability="MUTABLE")
    assert error_of(exc)[0] == "RepositoryNotFoundException"

    arn = f"arn:aws:ecr:us-east-1:123456789012:repository/{REPO}"
    client.tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    client.tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "3"}])
    client.untag_resource(resourceArn=arn, tagKeys=["b"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "a", "Value": "3"}]
    assert_shape(standin, "ListTagsForResource")
    with pytest.raises(ClientError) as exc:
        client.tag_resource(resourceArn="not-an-arn", tags=[{"Key": "a", "Value": "1"}])
    assert error_of(exc)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        client.tag_resource(resourceArn=arn.replace(REPO, "team/none"), tags=[{"Key": "a", "Value": "1"}])
    assert error_of(exc)[0] == "RepositoryNotFoundException"


def test_account_settings(standin):
    """PutAccountSetting/GetAccountSetting: BLOB_MOUNTING ENABLED or DISABLED (default DISABLED: the feature
    is opt-in, blob-mounting.html); an unknown name or value is a ValidationException."""
    client = standin.client()
    assert client.get_account_setting(name="BLOB_MOUNTING")["value"] == "DISABLED"
    assert_shape(standin)
    answer = client.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    assert_shape(standin)
    assert (answer["name"], answer["value"]) == ("BLOB_MOUNTING", "ENABLED")
    assert client.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    for bad in ({"name": "BLOB_MOUNTING", "value": "YES"}, {"name": "NO_SUCH_SETTING", "value": "ENABLED"}):
        with pytest.raises(ClientError) as exc:
            client.put_account_setting(**bad)
        assert error_of(exc)[0] == "ValidationException"


# ---------------------------------------------------------------------- images: the two faces agree


@pytest.mark.parametrize("oci", [True, False], ids=["oci", "docker"])
def test_describe_images_agrees_with_what_was_pushed(standin, oci):
    """One store: every manifest pushed through the registry face is an image in DescribeImages with the
    same digest, media type and tags; children are untagged. imageSizeInBytes: filesystem layers of a
    manifest, 0 for an attestation (aws/aws-cdk#30258), the largest child for an index (service model
    ``ImageDetail``); artifactMediaType is the config's media type; imagePushedAt is the push time."""
    before = time.time()
    index = push_sample(standin, oci=oci)
    after = time.time()
    details = {d["imageDigest"]: d for d in standin.client().describe_images(repositoryName=REPO)["imageDetails"]}
    assert_shape(standin)
    pushed = {child.digest: child for child in index.children}
    assert set(details) == set(pushed) | {index.digest}
    for digest, child in pushed.items():
        detail = details[digest]
        assert detail["imageManifestMediaType"] == child.media_type
        assert "imageTags" not in detail
        assert detail["artifactMediaType"] == child.json["config"]["mediaType"]
        expected = sum(layer.size for layer in child.layers)  # attestations have none
        assert detail["imageSizeInBytes"] == expected
        assert before <= detail["imagePushedAt"].timestamp() <= after
    top = details[index.digest]
    assert top["imageTags"] == ["v1"]
    assert top["imageManifestMediaType"] == index.media_type
    assert "artifactMediaType" not in top
    assert top["imageSizeInBytes"] == max(sum(layer.size for layer in image.layers) for image in index.images)


def test_describe_images_by_id_filters_and_errors(standin):
    """DescribeImages with imageIds (one detail per image, tag or digest), tagStatus filter, and its errors:
    ImageNotFoundException naming the id, InvalidParameterException for maxResults with imageIds or more
    than 100 ids (API reference; trek10inc/ecr-cleaner#8)."""
    index = push_sample(standin)
    client = standin.client()
    both = client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "v1"}, {"imageDigest": index.digest}])
    assert [d["imageDigest"] for d in both["imageDetails"]] == [index.digest]
    tagged = client.describe_images(repositoryName=REPO, filter={"tagStatus": "TAGGED"})["imageDetails"]
    untagged = client.describe_images(repositoryName=REPO, filter={"tagStatus": "UNTAGGED"})["imageDetails"]
    assert [d["imageDigest"] for d in tagged] == [index.digest]
    assert {d["imageDigest"] for d in untagged} == {c.digest for c in index.children}
    with pytest.raises(ClientError) as exc:
        client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "v9"}])
    assert error_of(exc) == (
        "ImageNotFoundException",
        "The image with imageId {imageDigest:'null', imageTag:'v9'} does not exist within the repository with "
        "name 'team/app' in the registry with id '123456789012'",
    )
    for bad in (
        {"imageIds": [{"imageTag": "v1"}], "maxResults": 10},
        {"imageIds": [{"imageTag": f"t{i}"} for i in range(101)]},
        {"filter": {"tagStatus": "SOME"}},
    ):
        with pytest.raises(ClientError) as exc:
            client.describe_images(repositoryName=REPO, **bad)
        assert error_of(exc)[0] == "InvalidParameterException", bad
    with pytest.raises(ClientError) as exc:
        client.describe_images(repositoryName="team/none")
    assert error_of(exc)[0] == "RepositoryNotFoundException"


def test_describe_and_list_images_paginate(ecr_factory):
    """DescribeImages and ListImages: up to 100 results per page by default, maxResults 1..1000, nextToken;
    ListImages has one entry per tag, digest-only entries for untagged images (API reference)."""
    ecr = ecr_factory(put_image_rate=None)
    ecr.create_repository(REPO)
    base = build_image(seed=200, layers=1, layer_size=8)
    images = [variant(base, i) for i in range(103)]  # 103 manifests over the same two blobs
    with ecr.http() as http:
        push_image(ecr.url, REPO, base, client=http)
        ecr.lifecycle_expire(REPO, [base.digest])
        for i, (body, digest) in enumerate(images):
            push_manifest(ecr.url, REPO, f"t{i}" if i % 2 == 0 else digest, body, base.media_type, client=http)
        push_manifest(ecr.url, REPO, "also", images[0][0], base.media_type, client=http)
    images = [SimpleNamespace(digest=digest) for _, digest in images]
    client = ecr.client()
    first = client.describe_images(repositoryName=REPO)
    assert len(first["imageDetails"]) == 100 and first["nextToken"]
    second = client.describe_images(repositoryName=REPO, nextToken=first["nextToken"])
    assert len(second["imageDetails"]) == 3 and "nextToken" not in second
    assert_shape(ecr, "DescribeImages")

    expected = 52 + 1 + 51  # 52 tagged images, one with a second tag; 51 untagged
    listed = [
        i
        for page in client.get_paginator("list_images").paginate(repositoryName=REPO, PaginationConfig={"PageSize": 40})
        for i in page["imageIds"]
    ]
    assert_shape(ecr, "ListImages")
    assert len(listed) == expected
    assert {"imageDigest": images[0].digest, "imageTag": "also"} in listed
    assert {"imageDigest": images[1].digest} in listed
    assert ecr.count(op="ListImages", face="api") == 3
    assert (
        len(client.list_images(repositoryName=REPO, filter={"tagStatus": "UNTAGGED"}, maxResults=1000)["imageIds"])
        == 51
    )
    default_page = client.list_images(repositoryName=REPO)
    assert len(default_page["imageIds"]) == 100 and default_page["nextToken"]
    for bad in ({"maxResults": 1001}, {"nextToken": default_page["nextToken"][::-1]}):
        with pytest.raises(ClientError) as exc:
            client.list_images(repositoryName=REPO, **bad)
        assert error_of(exc)[0] == "InvalidParameterException", bad


def test_batch_get_image_returns_the_exact_bytes(standin):
    """BatchGetImage: ``imageManifest`` is the manifest exactly as pushed (same digest), with its media type;
    per-id failures carry ECR's ImageFailureCode (ImageNotFound, MissingDigestAndTag, InvalidImageDigest,
    ImageTagDoesNotMatchDigest); at most 100 ids (service model)."""
    index = push_sample(standin)
    child = index.images[1]
    client = standin.client()
    accepted = [index.media_type, child.media_type]
    answer = client.batch_get_image(
        repositoryName=REPO,
        imageIds=[
            {"imageTag": "v1"},
            {"imageDigest": child.digest},
            {"imageTag": "nope"},
            {},
            {"imageDigest": "sha256:xyz"},
            {"imageTag": "v1", "imageDigest": child.digest},
        ],
        acceptedMediaTypes=accepted,
    )
    assert_shape(standin)
    got = {i["imageId"]["imageDigest"]: i for i in answer["images"]}
    assert got[index.digest]["imageManifest"].encode() == index.manifest
    assert got[index.digest]["imageId"] == {"imageDigest": index.digest, "imageTag": "v1"}
    assert got[index.digest]["imageManifestMediaType"] == index.media_type
    assert got[child.digest]["imageManifest"].encode() == child.manifest
    assert [(f["imageId"], f["failureCode"]) for f in answer["failures"]] == [
        ({"imageTag": "nope"}, "ImageNotFound"),
        ({}, "MissingDigestAndTag"),
        ({"imageDigest": "sha256:xyz"}, "InvalidImageDigest"),
        ({"imageTag": "v1", "imageDigest": child.digest}, "ImageTagDoesNotMatchDigest"),
    ]
    assert answer["failures"][0]["failureReason"] == "Requested image not found"
    with standin.http() as http:
        assert get_manifest(standin.url, REPO, "v1", client=http)[0] == got[index.digest]["imageManifest"].encode()

    # without acceptedMediaTypes only the documented manifest types come back: an index is a failure
    plain = client.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "v1"}, {"imageDigest": child.digest}])
    assert [i["imageId"]["imageDigest"] for i in plain["images"]] == [child.digest]
    assert [f["failureCode"] for f in plain["failures"]] == ["UnsupportedImageType"]
    too_many = [
        ("imageIds", {"imageIds": [{"imageTag": f"t{i}"} for i in range(101)]}),
        ("acceptedMediaTypes", {"imageIds": [{"imageTag": "v1"}], "acceptedMediaTypes": ["x"] * 101}),
    ]
    for parameter, bad in too_many:
        with pytest.raises(ClientError) as exc:
            client.batch_get_image(repositoryName=REPO, **bad)
        assert error_of(exc) == (
            "InvalidParameterException",
            f"Invalid parameter at '{parameter}' failed to satisfy constraint: "
            "'Member must have length less than or equal to 100'",
        )
    ids = [{"imageTag": "v1"}] * 100
    assert len(client.batch_get_image(repositoryName=REPO, imageIds=ids, acceptedMediaTypes=accepted)["images"]) == 100


def test_batch_delete_image_semantics(standin):
    """BatchDeleteImage: by tag removes that tag, the image goes with its last tag; by digest the image and
    its tags go, from distribution too (registry GET then 404). An index child is not deleted
    (ImageReferencedByManifestList, oras-project/oras#1228); per-id failures sit beside the successes."""
    index = push_sample(standin)
    child = index.images[0].digest
    other = build_image(seed=50)
    with standin.http() as http:
        push_image(standin.url, REPO, other, tag="a", client=http)
        push_image(standin.url, REPO, other, tag="b", client=http)
    client = standin.client()
    answer = client.batch_delete_image(
        repositoryName=REPO, imageIds=[{"imageDigest": child}, {"imageTag": "a"}, {"imageTag": "zzz"}]
    )
    assert_shape(standin)
    assert answer["imageIds"] == [{"imageDigest": other.digest, "imageTag": "a"}]
    assert [(f["imageId"], f["failureCode"], f["failureReason"]) for f in answer["failures"]] == [
        (
            {"imageDigest": child},
            "ImageReferencedByManifestList",
            f"Requested image referenced by manifest list: [{index.digest}]",
        ),
        ({"imageTag": "zzz"}, "ImageNotFound", "Requested image not found"),
    ]
    assert standin.tags(REPO) == {"v1": index.digest, "b": other.digest}

    answer = client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "b"}])
    assert answer["imageIds"] == [{"imageDigest": other.digest, "imageTag": "b"}]
    answer = client.batch_delete_image(
        repositoryName=REPO, imageIds=[{"imageDigest": index.digest}, {"imageDigest": child}]
    )
    assert answer["imageIds"] == [{"imageDigest": index.digest, "imageTag": "v1"}, {"imageDigest": child}]
    with standin.http() as http:
        for digest in (other.digest, index.digest, child):
            assert head_manifest(standin.url, REPO, digest, client=http) is None
            assert httpx.head(f"{standin.registry.url}/v2/{REPO}/manifests/{digest}").status_code == 404
    assert set(standin.images(REPO)) == {c.digest for c in index.children} - {child}
    with pytest.raises(ClientError) as exc:
        client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": f"t{i}"} for i in range(101)])
    assert error_of(exc)[0] == "InvalidParameterException"


def test_lifecycle_expiry_breaks_an_index(standin):
    """Lifecycle rules do not protect index children (aws/containers-roadmap#1466, #2613): ``lifecycle_expire``
    deletes a child anyway. The index stays (tag, DescribeImages, BatchGetImage), the child is gone from both
    faces, and the index's size drops to its remaining children."""
    index = push_sample(standin)
    child = index.images[0]
    standin.lifecycle_expire(REPO, [child.digest])
    client = standin.client()
    details = {d["imageDigest"]: d for d in client.describe_images(repositoryName=REPO)["imageDetails"]}
    assert child.digest not in details and index.digest in details
    assert details[index.digest]["imageSizeInBytes"] == sum(layer.size for layer in index.images[1].layers)
    got = client.batch_get_image(
        repositoryName=REPO, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[index.media_type]
    )
    assert got["images"][0]["imageManifest"].encode() == index.manifest
    with standin.http() as http:
        assert head_manifest(standin.url, REPO, child.digest, client=http) is None
        assert get_manifest(standin.url, REPO, "v1", client=http)[2] == index.digest


# ---------------------------------------------------------------------- counting and faults


def test_counts_per_face_and_action(standin):
    """``count(op=...)`` counts ECR API calls and the registry requests that stand for an ECR action (what's-new
    2020-02: docker push and pull "translate to ECR APIs"), so tests can assert ECR-side cost."""
    index = push_sample(standin)
    client = standin.client()
    client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "v1"}])
    with standin.http() as http:
        head_manifest(standin.url, REPO, "v1", client=http)
    manifests = len(index.children) + 1
    assert standin.count(op="PutImage") == manifests
    assert standin.count(op="DescribeImages") == 1 and standin.count(op="DescribeImages", face="registry") == 0
    assert standin.count(op="BatchGetImage") == 1  # the HEAD
    blobs = {d for child in index.children for d in child.blob_digests}
    assert standin.count(op="InitiateLayerUpload") == len(blobs) == standin.count(op="CompleteLayerUpload")
    assert standin.count("PUT", "/manifests/") == manifests
    assert standin.count(face="api") == 1
    standin.reset_counts()
    assert standin.count() == 0 and standin.count(face="api") == 0


def test_api_faults_are_seen_and_retried_by_boto3(standin):
    """``add_api_fault`` answers the next call of an action with an error (default ThrottlingException "Rate
    exceeded"); boto3 retries throttling, and the counts show both calls."""
    push_sample(standin)
    standin.add_api_fault("DescribeImages")
    details = standin.client().describe_images(repositoryName=REPO)["imageDetails"]
    assert len(details) == 5
    assert standin.count(op="DescribeImages") == 2
    assert standin.count(op="DescribeImages", error="ThrottlingException") == 1
