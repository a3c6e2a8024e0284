"""Manifests and indexes: parsing that keeps the raw bytes, platforms, subsets, index rewriting."""

from __future__ import annotations

import hashlib
import json

import pytest

from ecr_mirror import manifest as manifest_module
from ecr_mirror.errors import CopyError, DigestMismatchError, ManifestError, MirrorError, PlatformError
from ecr_mirror.manifest import (
    ACCEPT,
    ANNOTATION_SOURCE_DIGEST,
    ANNOTATION_SOURCE_REF,
    ATTESTATION_DIGEST_KEY,
    ATTESTATION_TYPE,
    ATTESTATION_TYPE_KEY,
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_INDEX_CHILDREN,
    MAX_MANIFEST_BYTES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    arch_tag_suffixes,
    build_index,
    parse_manifest,
    parse_platforms,
    rewrite_index,
    select_children,
    sha256_digest,
)


# ---------------------------------------------------------------- builders


def dg(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def image_desc(platform: str, *, media_type: str = OCI_MANIFEST, seed: str | None = None, size: int = 1234) -> dict:
    os_, arch, *variant = platform.split("/")
    p = {"architecture": arch, "os": os_}
    if variant:
        p["variant"] = variant[0]
    return {"mediaType": media_type, "digest": dg(seed or platform), "size": size, "platform": p}


def attestation_desc(subject: str, *, media_type: str = OCI_MANIFEST) -> dict:
    return {
        "mediaType": media_type,
        "digest": dg("attestation of " + subject),
        "size": 839,
        "annotations": {ATTESTATION_DIGEST_KEY: subject, ATTESTATION_TYPE_KEY: ATTESTATION_TYPE},
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


#: each descriptor serialised differently, so a rewrite that re-serialises them cannot pass for byte-identical
STYLES = [
    lambda d: json.dumps(d, separators=(",", ":")),
    lambda d: json.dumps(d, indent=2),
    lambda d: json.dumps(d, sort_keys=True),
    lambda d: json.dumps(d, indent="\t", separators=(", ", " : ")),
    lambda d: json.dumps(d, ensure_ascii=True).replace('"mediaType"', '"media\\u0054ype"'),
]


def index_raw(
    descs: list[dict],
    media_type: str | None = OCI_INDEX,
    *,
    annotations: dict | None = None,
    extra: str = "",
) -> tuple[bytes, list[str]]:
    """Index bytes as an upstream tool might write them, and the exact text of each descriptor."""
    pieces = [STYLES[i % len(STYLES)](d) for i, d in enumerate(descs)]
    head = '{\n  "schemaVersion": 2,\n'
    if media_type is not None:
        head += f'  "mediaType": "{media_type}",\n'
    body = head + '  "manifests": [\n    ' + ",\n    ".join(pieces) + "\n  ]"
    if annotations is not None:
        body += ',\n  "annotations": ' + json.dumps(annotations)
    body += extra + "\n}\n"
    return body.encode(), pieces


def buildkit_descs(media_type: str = OCI_MANIFEST) -> list[dict]:
    """What `docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 --provenance` pushes."""
    images = [image_desc(p, media_type=media_type) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")]
    return images + [attestation_desc(d["digest"], media_type=media_type) for d in images]


def buildkit_index(media_type: str = OCI_INDEX, **kwargs) -> tuple[Manifest, list[str]]:
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    raw, pieces = index_raw(buildkit_descs(child_type), media_type, **kwargs)
    return parse_manifest(raw, media_type), pieces


def image_manifest(media_type: str = OCI_MANIFEST, *, with_media_type: bool = True, layers: int = 2) -> bytes:
    config_type = OCI_CONFIG if media_type == OCI_MANIFEST else DOCKER_CONFIG
    layer_type = (
        "application/vnd.oci.image.layer.v1.tar+gzip"
        if media_type == OCI_MANIFEST
        else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    doc: dict = {"schemaVersion": 2}
    if with_media_type:
        doc["mediaType"] = media_type
    doc["config"] = {"mediaType": config_type, "digest": dg("config"), "size": 1469}
    doc["layers"] = [{"mediaType": layer_type, "digest": dg(f"layer{i}"), "size": 1000 + i} for i in range(layers)]
    return json.dumps(doc, indent=3).encode()


def locate(raw: bytes, piece: str) -> int:
    """Where the exact text of a descriptor sits in ``raw``; it must be there exactly once."""
    needle = piece.encode()
    assert raw.count(needle) == 1, f"descriptor text found {raw.count(needle)} times"
    return raw.index(needle)


def digests(descs) -> list[str]:
    return [d.digest for d in descs]


# ---------------------------------------------------------------- platforms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("windows/amd64", Platform("windows", "amd64")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        (" linux/s390x ", Platform("linux", "s390x")),
    ],
)
def test_platform_parse(text, expected):
    assert Platform.parse(text) == expected
    assert Platform.parse(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    ["linux", "linux/arm64/v8/x", "", "/", "linux/", "/amd64", "linux//v8", "linux/arm64/", "linux/amd 64",
     "linux/amd64\n/v8", "linux/-amd64", "linux\\amd64"],
)
def test_platform_parse_rejects(text):
    with pytest.raises(PlatformError) as info:
        Platform.parse(text)
    assert repr(text) in str(info.value)
    assert "os/architecture[/variant]" in str(info.value)


@pytest.mark.parametrize("value", [None, 3, ["linux", "amd64"]])
def test_platform_parse_rejects_non_strings(value):
    with pytest.raises(PlatformError):
        Platform.parse(value)


def test_parse_platforms():
    assert parse_platforms(["linux/amd64", "linux/arm64"]) == [Platform("linux", "amd64"), Platform("linux", "arm64")]
    with pytest.raises(PlatformError, match="'linux'"):
        parse_platforms(["linux/amd64", "linux"])


@pytest.mark.parametrize(
    ("wanted", "entry", "expected"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/arm64", "linux/arm64/v8", True),  # no variant asked: any variant
        ("linux/arm64", "linux/arm64", True),
        ("linux/arm64/v8", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),  # an arm64 entry without a variant means v8
        ("linux/arm/v7", "linux/arm", True),  # an arm entry without a variant means v7
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm/v6", False),  # a variant given must match
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm/v6", "linux/arm", False),
        ("linux/arm64/v9", "linux/arm64", False),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64/v2", "linux/amd64", False),
        ("linux/amd64", "unknown/unknown", False),
    ],
)
def test_platform_matches(wanted, entry, expected):
    assert Platform.parse(wanted).matches(Platform.parse(entry)) is expected


def test_platform_from_descriptor_and_config():
    assert Platform.from_descriptor(image_desc("linux/arm/v7")) == Platform("linux", "arm", "v7")
    assert Platform.from_descriptor({"digest": "x"}) is None
    assert Platform.from_descriptor({"platform": {"os": "linux"}}) is None
    assert Platform.from_descriptor({"platform": {"os": "linux", "architecture": "arm", "variant": 7}}) == Platform(
        "linux", "arm"
    )
    assert Platform.from_config({"os": "linux", "architecture": "arm64", "variant": "v8"}) == Platform(
        "linux", "arm64", "v8"
    )
    with pytest.raises(ManifestError, match="os/architecture"):
        Platform.from_config({"os": "linux"})
    assert Platform("unknown", "unknown").is_unknown
    assert str(Platform("linux", "arm", "v7")) == "linux/arm/v7"
    assert Platform("linux", "amd64").as_dict() == {"architecture": "amd64", "os": "linux"}


# ---------------------------------------------------------------- parse_manifest


def test_accept_lists_every_manifest_type():
    for media_type in (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST):
        assert media_type in ACCEPT


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_parse_index(media_type):
    m, _ = buildkit_index(media_type)
    assert m.media_type == media_type
    assert m.is_index
    assert m.digest == sha256_digest(m.raw) == "sha256:" + hashlib.sha256(m.raw).hexdigest()
    assert [str(c.platform) for c in m.children] == [
        "linux/amd64", "linux/arm64", "linux/arm/v7", "unknown/unknown", "unknown/unknown", "unknown/unknown"
    ]
    assert [c.is_attestation for c in m.children] == [False] * 3 + [True] * 3
    assert [c.attests for c in m.children[3:]] == digests(m.children[:3])
    assert m.layers == []
    with pytest.raises(ManifestError, match="is an index"):
        m.config


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_parse_image_manifest(media_type):
    raw = image_manifest(media_type)
    m = parse_manifest(raw, media_type)
    assert (m.raw, m.media_type, m.digest, m.is_index) == (raw, media_type, sha256_digest(raw), False)
    assert m.config.digest == dg("config")
    assert digests(m.layers) == [dg("layer0"), dg("layer1")]
    assert digests(m.blobs) == [dg("config"), dg("layer0"), dg("layer1")]
    assert m.children == []
    assert m.subject is None
    assert m.descriptor(Platform("linux", "arm64")) == {
        "mediaType": media_type,
        "digest": m.digest,
        "size": len(raw),
        "platform": {"architecture": "arm64", "os": "linux"},
    }


def test_blobs_are_deduplicated_in_order():
    doc = json.loads(image_manifest())
    doc["layers"].append(dict(doc["layers"][0]))
    doc["layers"].append(dict(doc["config"], mediaType="application/vnd.oci.image.layer.v1.tar"))
    m = parse_manifest(json.dumps(doc).encode())
    assert digests(m.blobs) == [dg("config"), dg("layer0"), dg("layer1")]


def test_subject():
    doc = json.loads(image_manifest())
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": dg("subject"), "size": 10}
    assert parse_manifest(json.dumps(doc).encode()).subject.digest == dg("subject")


def test_missing_media_type_is_inferred():
    raw, _ = index_raw([image_desc("linux/amd64")], media_type=None)
    assert parse_manifest(raw).media_type == OCI_INDEX
    assert parse_manifest(raw, "application/json").media_type == OCI_INDEX
    assert parse_manifest(image_manifest(with_media_type=False)).media_type == OCI_MANIFEST
    # the Content-Type header decides when the body does not say
    assert parse_manifest(raw, DOCKER_LIST).media_type == DOCKER_LIST
    assert parse_manifest(raw, f"{OCI_INDEX}; charset=utf-8").media_type == OCI_INDEX


def test_content_type_must_agree_with_media_type():
    raw, _ = index_raw([image_desc("linux/amd64")], OCI_INDEX)
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, DOCKER_LIST)
    assert DOCKER_LIST in str(info.value) and OCI_INDEX in str(info.value)
    assert parse_manifest(raw, OCI_INDEX.upper()).media_type == OCI_INDEX  # header case does not matter
    assert parse_manifest(raw, "text/plain").media_type == OCI_INDEX  # a non-manifest type is ignored


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        ({"schemaVersion": 1, "name": "library/golang", "tag": "latest", "fsLayers": []}, None),
        ({"schemaVersion": 1, "name": "x", "signatures": []}, DOCKER_SCHEMA1_SIGNED),
        ({"schemaVersion": 1, "mediaType": DOCKER_SCHEMA1}, None),
        ({"schemaVersion": 2, "config": {}}, DOCKER_SCHEMA1),
    ],
)
def test_schema1_is_refused(doc, content_type):
    with pytest.raises(ManifestError, match="schema 1"):
        parse_manifest(json.dumps(doc).encode(), content_type)


def test_size_limit():
    doc = json.loads(image_manifest())
    doc["annotations"] = {"pad": ""}
    base = len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * (MAX_MANIFEST_BYTES - base)
    at_limit = json.dumps(doc).encode()
    assert len(at_limit) == MAX_MANIFEST_BYTES == 4 * 1024 * 1024
    assert parse_manifest(at_limit).digest == sha256_digest(at_limit)
    with pytest.raises(ManifestError) as info:
        parse_manifest(at_limit + b" ")
    assert str(MAX_MANIFEST_BYTES + 1) in str(info.value) and str(MAX_MANIFEST_BYTES) in str(info.value)


def _nested_index(depth: int) -> bytes:
    raw, _ = index_raw([image_desc("linux/amd64")], extra=',\n  "x": ' + "[" * depth + "]" * depth)
    return raw


@pytest.mark.parametrize("depth", [100, 990, 5_000, 200_000])
def test_deeply_nested_json_is_refused(depth):
    with pytest.raises(ManifestError, match="nested too deeply"):
        parse_manifest(_nested_index(depth))


def test_deeply_nested_json_is_refused_whatever_the_callers_stack():
    # a fixed limit: the answer must not depend on how deep in the stack parse_manifest is called
    def at_depth(n, f):
        return f() if n == 0 else at_depth(n - 1, f)

    for stack in (0, 400, 800):
        for payload in (_nested_index(500), b"[" * (MAX_MANIFEST_BYTES - 1), b'{"a":' * 100_000):
            with pytest.raises(ManifestError, match="nested too deeply"):
                at_depth(stack, lambda: parse_manifest(payload))
    assert parse_manifest(_nested_index(10)).is_index  # modest nesting is fine


def test_index_listing_itself(monkeypatch):
    # a sha256 fixed point cannot be built, so make every digest the same one
    fixed = dg("itself")
    monkeypatch.setattr(manifest_module, "sha256_digest", lambda data: fixed)
    raw, _ = index_raw([image_desc("linux/amd64"), {"mediaType": OCI_INDEX, "digest": fixed, "size": 10}])
    with pytest.raises(ManifestError, match="lists itself"):
        parse_manifest(raw)


def test_too_many_children():
    descs = [image_desc("linux/amd64", seed=str(i), size=i + 1) for i in range(MAX_INDEX_CHILDREN + 1)]
    raw, _ = index_raw(descs[:MAX_INDEX_CHILDREN])
    assert len(parse_manifest(raw).children) == MAX_INDEX_CHILDREN
    raw, _ = index_raw(descs)
    with pytest.raises(ManifestError, match=f"lists {MAX_INDEX_CHILDREN + 1} manifests, over the limit"):
        parse_manifest(raw)


def test_expected_digest():
    raw = image_manifest()
    assert parse_manifest(raw, expected_digest=sha256_digest(raw)).digest == sha256_digest(raw)
    wrong = dg("something else")
    with pytest.raises(DigestMismatchError) as info:
        parse_manifest(raw, OCI_MANIFEST, expected_digest=wrong)
    assert wrong in str(info.value) and sha256_digest(raw) in str(info.value)
    assert (info.value.expected, info.value.actual) == (wrong, sha256_digest(raw))
    # one changed byte is a different manifest
    with pytest.raises(DigestMismatchError):
        parse_manifest(raw.replace(b"1469", b"1468"), expected_digest=sha256_digest(raw))


MALFORMED = [
    (b"", "not valid JSON"),
    (b"not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (json.dumps({"schemaVersion": 2, "config": {}}).encode("utf-16"), "not valid JSON"),  # UTF-8 only
    (b"\xef\xbb\xbf" + image_manifest(), "not valid JSON"),  # no byte-order mark
    (b"[]", "not a JSON object"),
    (b'"x"', "not a JSON object"),
    (b"{}", "cannot tell what kind of manifest"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example+json"}).encode(), "unsupported manifest mediaType"),
    (json.dumps({"schemaVersion": 2, "mediaType": 7, "config": {}}).encode(), "mediaType is not a string"),
    (json.dumps({"mediaType": OCI_INDEX, "manifests": []}).encode(), "schemaVersion None"),
    (json.dumps({"schemaVersion": 3, "mediaType": OCI_INDEX, "manifests": []}).encode(), "schemaVersion 3"),
    (json.dumps({"schemaVersion": 2.0, "mediaType": OCI_INDEX, "manifests": []}).encode(), "schemaVersion 2.0"),
    (json.dumps({"schemaVersion": True, "mediaType": OCI_INDEX, "manifests": []}).encode(), "schemaVersion True"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX}).encode(), "no manifests list"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}).encode(), "no manifests list"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [1]}).encode(), "not an object"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": dg("a"), "size": 1}]}).encode(), "without mediaType"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:abc", "size": 1}]}).encode(), "64 lowercase hex digits"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": dg("a"), "size": -1}]}).encode(), "invalid size -1"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": dg("a"), "size": True}]}).encode(), "invalid size True"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": dg("a"), "size": 1, "annotations": [1]}]}).encode(), "invalid annotations"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg("a"), "size": 1}]}).encode(), "unsupported type"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(), "no config descriptor"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": dg("c"), "size": 1}, "layers": {}}).encode(), "invalid layers list"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": dg("c"), "size": 1}, "layers": [None]}).encode(), "not an object"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": dg("c"), "size": 1}, "layers": [{"mediaType": "x", "digest": dg("l"), "size": 1}] * 1025}).encode(), "1025 layers, over the limit"),
    (b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'", "manifests": [], "n": 1' + b"0" * 5000 + b"}", "not valid JSON"),
]


@pytest.mark.parametrize(("raw", "fragment"), MALFORMED)
def test_malformed_manifests_are_refused(raw, fragment):
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_nested_index_children_are_allowed():
    raw, _ = index_raw([{"mediaType": OCI_INDEX, "digest": dg("inner"), "size": 5}])
    assert parse_manifest(raw).children[0].media_type == OCI_INDEX


def test_descriptor_equality_ignores_annotations():
    a = Descriptor.from_json(image_desc("linux/amd64"), where="t")
    b = Descriptor.from_json(dict(image_desc("linux/amd64"), annotations={"k": "v"}), where="t")
    assert a == b and hash(a) == hash(b)
    assert not a.is_attestation and a.attests is None


# ---------------------------------------------------------------- select_children


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_select_all(media_type):
    m, _ = buildkit_index(media_type)
    assert digests(select_children(m, None)) == digests(m.children)


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_select_subset_keeps_attestations_in_order(media_type):
    m, _ = buildkit_index(media_type)
    amd64, arm64, armv7, att_amd64, att_arm64, att_armv7 = m.children
    assert digests(select_children(m, [Platform.parse("linux/arm64")])) == [arm64.digest, att_arm64.digest]
    assert digests(select_children(m, [Platform.parse("linux/arm64/v8")])) == [arm64.digest, att_arm64.digest]
    # asked in another order, kept in the index's order
    picked = select_children(m, parse_platforms(["linux/arm/v7", "linux/amd64"]))
    assert digests(picked) == [amd64.digest, armv7.digest, att_amd64.digest, att_armv7.digest]
    # the same platform twice is kept once
    assert digests(select_children(m, parse_platforms(["linux/amd64", "linux/amd64"]))) == [
        amd64.digest, att_amd64.digest
    ]


def test_select_attestations_only_for_kept_images():
    descs = [image_desc("linux/amd64"), image_desc("linux/arm64")]
    descs += [
        attestation_desc(dg("linux/arm64")),
        attestation_desc(dg("not in the index")),
        # unknown/unknown without the attestation annotations is not an attestation
        {"mediaType": OCI_MANIFEST, "digest": dg("u"), "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
        # an attestation type without a digest refers to nothing
        {"mediaType": OCI_MANIFEST, "digest": dg("v"), "size": 1, "annotations": {ATTESTATION_TYPE_KEY: ATTESTATION_TYPE}},
    ]
    m = parse_manifest(index_raw(descs)[0])
    assert digests(select_children(m, [Platform.parse("linux/arm64")])) == [dg("linux/arm64"), dg("attestation of " + dg("linux/arm64"))]
    assert digests(select_children(m, [Platform.parse("linux/amd64")])) == [dg("linux/amd64")]


def test_select_variant_must_match():
    descs = [image_desc("linux/arm/v6"), image_desc("linux/arm/v7")]
    m = parse_manifest(index_raw(descs)[0])
    assert digests(select_children(m, [Platform.parse("linux/arm/v7")])) == [dg("linux/arm/v7")]
    assert digests(select_children(m, [Platform.parse("linux/arm/v6")])) == [dg("linux/arm/v6")]
    # no variant asked: every arm variant matches
    assert digests(select_children(m, [Platform.parse("linux/arm")])) == [dg("linux/arm/v6"), dg("linux/arm/v7")]


def test_select_missing_platform_names_it_and_the_available_ones():
    m, _ = buildkit_index()
    with pytest.raises((ManifestError, CopyError)) as info:
        select_children(m, parse_platforms(["linux/amd64", "linux/s390x"]))
    message = str(info.value)
    assert "linux/s390x" in message
    for available in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        assert available in message
    assert "unknown/unknown" not in message  # attestations are not platforms one can ask for
    assert m.digest in message
    with pytest.raises(MirrorError, match="linux/arm/v6"):
        select_children(m, [Platform.parse("linux/arm/v6")])


def test_select_keeps_entries_not_digests():
    # one manifest listed under two platforms: asking for one keeps only that entry
    same = dg("multi-platform image")
    descs = [image_desc("linux/amd64", seed="multi-platform image"), image_desc("linux/arm64", seed="multi-platform image")]
    descs.append(image_desc("linux/s390x"))
    m = parse_manifest(index_raw(descs)[0])
    picked = select_children(m, [Platform.parse("linux/arm64")])
    assert [(d.digest, str(d.platform)) for d in picked] == [(same, "linux/arm64")]
    rewritten = rewrite_index(m, picked)
    assert [str(c.platform) for c in rewritten.children] == ["linux/arm64"]


# ---------------------------------------------------------------- rewrite_index


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_rewrite_keeps_descriptors_byte_identical(media_type):
    m, pieces = buildkit_index(media_type)
    keep = select_children(m, [Platform.parse("linux/arm64")])
    new = rewrite_index(m, keep, source="docker.io/library/golang:1.22")
    assert new.media_type == media_type
    assert new.is_index
    assert new.digest == sha256_digest(new.raw) != m.digest
    assert digests(new.children) == digests(keep)
    kept_pieces = [pieces[1], pieces[4]]  # arm64 image and its attestation
    for piece in kept_pieces:
        locate(m.raw, piece)
        locate(new.raw, piece)
    for i in (0, 2, 3, 5):
        assert json.loads(pieces[i])["digest"].encode() not in new.raw
    # the array holds exactly the kept texts, in order
    arm_at, att_at = locate(new.raw, kept_pieces[0]), locate(new.raw, kept_pieces[1])
    assert arm_at < att_at
    assert parse_manifest(new.raw, media_type, expected_digest=new.digest).data == new.data


def test_rewrite_is_deterministic():
    m, _ = buildkit_index()
    keep = select_children(m, parse_platforms(["linux/amd64", "linux/arm/v7"]))
    first = rewrite_index(m, keep, source="ghcr.io/a/b:v1")
    second = rewrite_index(m, keep, source="ghcr.io/a/b:v1")
    assert first.raw == second.raw and first.digest == second.digest
    # the same upstream bytes parsed afresh (another run, another process) give the same result
    again = parse_manifest(bytes(m.raw), m.media_type)
    third = rewrite_index(again, select_children(again, parse_platforms(["linux/arm/v7", "linux/amd64"])), source="ghcr.io/a/b:v1")
    assert third.raw == first.raw and third.digest == first.digest


def test_rewrite_oci_index_records_source():
    m, _ = buildkit_index(annotations={"org.opencontainers.image.created": "2026-01-01T00:00:00Z"})
    new = rewrite_index(m, select_children(m, [Platform.parse("linux/amd64")]), source="docker.io/library/golang:1.22")
    assert new.data["annotations"] == {
        "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
        ANNOTATION_SOURCE_REF: "docker.io/library/golang:1.22",
        ANNOTATION_SOURCE_DIGEST: m.digest,
    }
    assert m.data["annotations"] == {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}  # source untouched
    # other top-level fields survive as they were
    assert {k: v for k, v in new.data.items() if k not in ("manifests", "annotations")} == {
        k: v for k, v in m.data.items() if k not in ("manifests", "annotations")
    }


def test_rewrite_oci_index_without_source_adds_nothing():
    m, _ = buildkit_index()
    new = rewrite_index(m, select_children(m, [Platform.parse("linux/amd64")]))
    assert "annotations" not in new.data


def test_rewrite_docker_list_gets_no_annotations():
    m, _ = buildkit_index(DOCKER_LIST)
    new = rewrite_index(m, select_children(m, [Platform.parse("linux/amd64")]), source="docker.io/library/golang:1.22")
    assert new.media_type == DOCKER_LIST
    assert "annotations" not in new.data
    assert b"ecr-mirror" not in new.raw


def test_rewrite_keeping_everything_returns_the_original():
    for media_type in (OCI_INDEX, DOCKER_LIST):
        m, _ = buildkit_index(media_type)
        for keep in (m.children, select_children(m, None), list(reversed(m.children)),
                     select_children(m, parse_platforms(["linux/amd64", "linux/arm64", "linux/arm/v7"]))):
            new = rewrite_index(m, keep, source="x/y:z")
            assert new.raw == m.raw and new.digest == m.digest and new.media_type == media_type


def test_rewrite_index_without_media_type_stays_oci():
    raw, pieces = index_raw([image_desc("linux/amd64"), image_desc("linux/arm64")], media_type=None)
    m = parse_manifest(raw, OCI_INDEX)
    new = rewrite_index(m, m.children[1:], source="ghcr.io/a/b:c")
    assert new.media_type == OCI_INDEX and "mediaType" not in new.data
    assert new.data["annotations"][ANNOTATION_SOURCE_DIGEST] == m.digest
    locate(new.raw, pieces[1])


def test_rewrite_refuses_foreign_descriptors():
    m, _ = buildkit_index()
    other = parse_manifest(bytes(m.raw))  # equal content, but not these descriptors
    with pytest.raises(ManifestError, match="must come from the index"):
        rewrite_index(m, other.children[:1])
    with pytest.raises(ManifestError, match="is not an index"):
        rewrite_index(parse_manifest(image_manifest()), [])


def test_rewrite_follows_the_manifests_key_json_reads():
    # the key twice: json.loads (and so the copy engine) sees the last list; the rewrite must use the same one
    a = json.dumps(image_desc("linux/amd64", seed="decoy"))
    b, c = json.dumps(image_desc("linux/amd64")), json.dumps(image_desc("linux/arm64"))
    raw = f'{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", "manifests": [{a}, {a}], "manifests": [{b}, {c}]}}'.encode()
    m = parse_manifest(raw)
    new = rewrite_index(m, select_children(m, [Platform.parse("linux/amd64")]))
    assert digests(new.children) == [dg("linux/amd64")]
    locate(new.raw, b)
    assert dg("decoy").encode() not in new.raw


def test_rewrite_with_hostile_top_level_fields():
    descs = [image_desc("linux/amd64"), image_desc("linux/arm64")]
    # a value equal to the internal placeholder, a lone surrogate, non-ASCII text
    raw, pieces = index_raw(
        descs,
        annotations={"a": "\u0000MANIFESTS\u0000", "b": "\ud800", "c": "日本語"},
        extra=',\n  "x-other": {"manifests": "\\u0000MANIFESTS\\u0000"}',
    )
    m = parse_manifest(raw)
    new = rewrite_index(m, m.children[:1], source="ghcr.io/a/b:c")
    assert digests(new.children) == [dg("linux/amd64")]
    assert new.data["annotations"]["a"] == "\u0000MANIFESTS\u0000"
    assert new.data["annotations"]["b"] == "\ud800"
    assert new.data["annotations"]["c"] == "日本語"
    assert new.data["x-other"] == {"manifests": "\u0000MANIFESTS\u0000"}
    locate(new.raw, pieces[0])
    assert rewrite_index(m, m.children[:1], source="ghcr.io/a/b:c").raw == new.raw


@pytest.mark.parametrize("annotations", ['["a"]', '"x"', "[1]", "7"])
def test_rewrite_refuses_invalid_top_level_annotations(annotations):
    raw, _ = index_raw([image_desc("linux/amd64"), image_desc("linux/arm64")], extra=f',\n  "annotations": {annotations}')
    m = parse_manifest(raw)
    with pytest.raises(ManifestError, match="invalid annotations"):
        rewrite_index(m, m.children[:1], source="ghcr.io/a/b:c")


def test_rewrite_result_over_the_size_limit_is_refused():
    descs = [image_desc("linux/amd64"), image_desc("linux/arm64")]
    # upstream UTF-8 text near the limit; the rewrite (ASCII, escaped) would exceed it
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs, "x": "日本語" * 400_000}
    raw = json.dumps(doc, ensure_ascii=False).encode()
    assert len(raw) < MAX_MANIFEST_BYTES
    m = parse_manifest(raw)
    with pytest.raises(ManifestError, match="over the"):
        rewrite_index(m, m.children[:1])


# ---------------------------------------------------------------- build_index, arch tags


def _images(*platforms: str, media_type: str = OCI_MANIFEST) -> list[tuple[Manifest, Platform]]:
    out = []
    for p in platforms:
        doc = json.loads(image_manifest(media_type))
        doc["config"]["digest"] = dg("config " + p)
        out.append((parse_manifest(json.dumps(doc).encode()), Platform.parse(p)))
    return out


def test_build_index_is_deterministic():
    children = _images("linux/amd64", "linux/arm64/v8")
    a = build_index(children, OCI_INDEX, {"b": "2", "a": "1"})
    b = build_index(_images("linux/amd64", "linux/arm64/v8"), OCI_INDEX, {"a": "1", "b": "2"})
    assert a.raw == b.raw and a.digest == b.digest
    assert a.media_type == OCI_INDEX
    assert list(a.data["annotations"]) == ["a", "b"]
    assert [(c.digest, c.size, c.media_type, str(c.platform)) for c in a.children] == [
        (m.digest, len(m.raw), OCI_MANIFEST, str(p)) for m, p in children
    ]


def test_build_docker_list_has_no_annotations():
    lst = build_index(_images("linux/amd64", "linux/arm/v7", media_type=DOCKER_MANIFEST), DOCKER_LIST, {"a": "1"})
    assert lst.media_type == DOCKER_LIST and "annotations" not in lst.data
    assert [str(c.platform) for c in lst.children] == ["linux/amd64", "linux/arm/v7"]
    assert [c.media_type for c in lst.children] == [DOCKER_MANIFEST] * 2


def _suffixes(*platforms: str) -> list[str]:
    descs = [image_desc(p) for p in platforms]
    descs += [attestation_desc(d["digest"]) for d in descs]
    m = parse_manifest(index_raw(descs)[0])
    out = {d.digest: suffix for d, suffix in arch_tag_suffixes(m.children)}
    assert not set(out) & {c.digest for c in m.children if c.is_attestation}  # attestations get no tag
    return [out.get(dg(p)) for p in platforms]


def test_arch_tag_suffixes():
    assert _suffixes("linux/amd64", "linux/arm64") == ["amd64", "arm64"]
    assert _suffixes("linux/amd64", "linux/arm64/v8") == ["amd64", "arm64"]  # variant only when needed
    assert _suffixes("linux/amd64", "linux/arm/v7") == ["amd64", "arm"]
    assert _suffixes("linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8") == [
        "amd64", "arm-v6", "arm-v7", "arm64"
    ]
    assert _suffixes("linux/amd64", "windows/amd64") == ["linux-amd64", "windows-amd64"]
    assert _suffixes() == []


def test_arch_tag_suffixes_skip_unknown_platforms():
    descs = [image_desc("linux/amd64"), {"mediaType": OCI_MANIFEST, "digest": dg("u"), "size": 1,
             "platform": {"os": "unknown", "architecture": "unknown"}}, {"mediaType": OCI_MANIFEST, "digest": dg("n"), "size": 1}]
    m = parse_manifest(index_raw(descs)[0])
    assert [(d.digest, suffix) for d, suffix in arch_tag_suffixes(m.children)] == [(dg("linux/amd64"), "amd64")]


def _windows(version: str, *, seed: str | None = None, features: list[str] | None = None) -> dict:
    d = image_desc("windows/amd64", seed=seed or version)
    d["platform"]["os.version"] = version
    if features:
        d["platform"]["os.features"] = features
    return d


def test_arch_tag_suffixes_tell_os_versions_apart():
    """Two windows/amd64 entries differing only in os.version (issue 13 kind 2): each its own tag."""
    descs = [_windows("10.0.17763.5820"), _windows("10.0.20348.2461")]
    m = parse_manifest(index_raw(descs)[0])
    assert [s for _, s in arch_tag_suffixes(m.children)] == ["amd64-10.0.17763.5820", "amd64-10.0.20348.2461"]
    with_linux = parse_manifest(index_raw([image_desc("linux/amd64"), *descs])[0])
    assert [s for _, s in arch_tag_suffixes(with_linux.children)] == [
        "linux-amd64", "windows-amd64-10.0.17763.5820", "windows-amd64-10.0.20348.2461"
    ]
    # one version per architecture needs no version in the tag
    single = parse_manifest(index_raw([image_desc("linux/arm64/v8"), _windows("10.0.17763.5820")])[0])
    assert [s for _, s in arch_tag_suffixes(single.children)] == ["arm64", "amd64"]


def test_arch_tag_suffixes_refuse_entries_no_tag_tells_apart():
    same = [_windows("10.0.17763.5820", seed="a"), _windows("10.0.17763.5820", seed="b", features=["win32k"])]
    m = parse_manifest(index_raw(same)[0])
    with pytest.raises(CopyError, match="would both be tagged <tag>-amd64") as info:
        arch_tag_suffixes(m.children)
    assert dg("a") in str(info.value) and dg("b") in str(info.value)
    # the same image listed twice (one digest) is one tag, not a conflict
    twice = parse_manifest(index_raw([image_desc("linux/amd64"), image_desc("linux/amd64")])[0])
    assert [s for _, s in arch_tag_suffixes(twice.children)] == ["amd64", "amd64"]
    # characters no tag may hold become '-'
    odd = image_desc("linux/arm/v7+x", seed="odd")
    odd_index = parse_manifest(index_raw([image_desc("linux/arm/v6"), odd])[0])
    assert [s for _, s in arch_tag_suffixes(odd_index.children)] == ["arm-v6", "arm-v7-x"]


# ---------------------------------------------------------------- descriptor kinds (issue 13 kind 1)


def _image_with_layers(*layers: dict, config_type: str = OCI_CONFIG, media_type: str = OCI_MANIFEST, **extra) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": config_type, "digest": dg("config"), "size": 7}, "layers": list(layers), **extra}
    return json.dumps(doc).encode()


def _layer(seed: str, media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip", **extra) -> dict:
    return {"mediaType": media_type, "digest": dg(seed), "size": 10, **extra}


@pytest.mark.parametrize("layer", [
    _layer("docker", manifest_module.DOCKER_FOREIGN_LAYER, urls=["https://example.invalid/a"]),
    _layer("docker-bare", "application/vnd.docker.image.rootfs.foreign.diff.tar"),
    _layer("oci", "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
    _layer("oci-zstd", "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
    _layer("urls", urls=["https://example.invalid/b"]),
], ids=["docker-foreign", "docker-foreign-tar", "oci-nondistributable", "oci-nondistributable-zstd", "any-layer-with-urls"])
def test_nondistributable_layers_are_not_required(layer):
    plain = _layer("plain")
    m = parse_manifest(_image_with_layers(plain, layer))
    assert [d.digest for d in m.nondistributable_layers] == [layer["digest"]]
    assert [d.digest for d in m.required_blobs] == [dg("config"), dg("plain")]
    assert [d.digest for d in m.blobs] == [dg("config"), dg("plain"), layer["digest"]]


def test_a_config_is_required_even_with_urls():
    m = parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": OCI_CONFIG, "digest": dg("config"), "size": 7, "urls": ["https://example.invalid/c"]}, "layers": []}).encode())
    assert [d.digest for d in m.required_blobs] == [dg("config")] and m.nondistributable_layers == []


def test_images_artifacts_and_their_types():
    image = parse_manifest(_image_with_layers(_layer("l")))
    docker = parse_manifest(_image_with_layers(_layer("l"), config_type=DOCKER_CONFIG, media_type=DOCKER_MANIFEST))
    helm = parse_manifest(_image_with_layers(_layer("chart"), config_type="application/vnd.cncf.helm.config.v1+json"))
    sbom = parse_manifest(_image_with_layers(_layer("s"), config_type=manifest_module.OCI_EMPTY, artifactType="application/spdx+json"))
    assert image.is_image and docker.is_image and image.artifact_type is None
    assert not helm.is_image and helm.artifact_type == "application/vnd.cncf.helm.config.v1+json"
    assert not sbom.is_image and sbom.artifact_type == "application/spdx+json"
    assert [d.digest for d in sbom.required_blobs] == [dg("config"), dg("s")]  # artifacts' blobs are copied


def test_withdrawn_artifact_manifest_lists_its_blobs():
    raw = json.dumps({"mediaType": manifest_module.OCI_ARTIFACT_MANIFEST, "artifactType": "application/x.sig",
                      "blobs": [_layer("sig")], "subject": image_desc("linux/amd64")}).encode()
    m = parse_manifest(raw)
    assert m.media_type == manifest_module.OCI_ARTIFACT_MANIFEST and not m.is_opaque and not m.is_index
    assert [d.digest for d in m.required_blobs] == [dg("sig")] and m.subject.digest == dg("linux/amd64")
    with pytest.raises(ManifestError, match="has no config"):
        m.config


def test_unknown_entries_parse_opaque_only_when_asked():
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example.thing.v1+json", "x": 1}).encode()
    with pytest.raises(ManifestError, match="unsupported manifest mediaType"):
        parse_manifest(body)
    m = parse_manifest(body, "application/vnd.example.thing.v1+json", opaque_type="application/vnd.example.thing.v1+json")
    assert m.is_opaque and m.media_type == "application/vnd.example.thing.v1+json" and m.raw == body
    assert m.blobs == [] and m.required_blobs == [] and m.children == [] and m.subject is None
    binary = parse_manifest(b"\x00\x01 not json", None, opaque_type="application/x-bin")
    assert binary.is_opaque and binary.media_type == "application/x-bin"
    # a media type from data only becomes a header when it is one
    sneaky = json.dumps({"schemaVersion": 2, "mediaType": "application/x\r\nX-Injected: 1"}).encode()
    assert parse_manifest(sneaky, None, opaque_type="application/x-bin").media_type == "application/x-bin"
    with pytest.raises(ManifestError, match="no usable media type"):
        parse_manifest(sneaky, None, opaque_type="not a media type")
    assert manifest_module.is_media_type("application/vnd.example.thing.v1+json")
    assert not manifest_module.is_media_type("application/x\r\nX: 1") and not manifest_module.is_media_type(7)
    # bytes that are a known manifest come back as that, whatever the entry said
    known = parse_manifest(_image_with_layers(_layer("l")), OCI_MANIFEST, opaque_type="application/x-unknown")
    assert not known.is_opaque and known.media_type == OCI_MANIFEST


def test_entry_kinds():
    kinds = {t: manifest_module.entry_kind(Descriptor(t, dg(t), 1)) for t in (
        OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST, manifest_module.OCI_ARTIFACT_MANIFEST, "application/x-new")}
    assert kinds == {OCI_INDEX: "index", DOCKER_LIST: "index", OCI_MANIFEST: "manifest", DOCKER_MANIFEST: "manifest",
                     manifest_module.OCI_ARTIFACT_MANIFEST: "manifest", "application/x-new": "unknown"}
    # an index may list entries of any manifest type, but not blobs
    parse_manifest(index_raw([{"mediaType": "application/x-new", "digest": dg("n"), "size": 3}])[0])
    for blob_type in (OCI_CONFIG, "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.empty.v1+json"):
        with pytest.raises(ManifestError, match="a blob, not a manifest"):
            parse_manifest(index_raw([{"mediaType": blob_type, "digest": dg("b"), "size": 3}])[0])


def test_platform_not_found_names_nested_indexes():
    raw, _ = index_raw([{"mediaType": OCI_INDEX, "digest": dg("inner"), "size": 5}, image_desc("linux/s390x")])
    with pytest.raises(ManifestError, match="inside its 1 nested index"):
        select_children(parse_manifest(raw), [Platform.parse("linux/amd64")])

