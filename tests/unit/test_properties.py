"""Property-based tests (hypothesis): references, platforms, manifest parsing and index rewriting.

Bounded (at most 200 examples each, no deadline) so the file runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror.errors import MirrorError, PlatformError, ReferenceError_
from ecr_mirror.manifest import (
    ANNOTATION_SOURCE_DIGEST,
    ANNOTATION_SOURCE_REF,
    ATTESTATION_DIGEST_KEY,
    ATTESTATION_TYPE,
    ATTESTATION_TYPE_KEY,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Platform,
    parse_manifest,
    rewrite_index,
    select_children,
    sha256_digest,
)
from ecr_mirror.reference import parse_reference

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- references

LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
MIXED = LOWER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
alnum = st.text(LOWER, min_size=1, max_size=5)
# distribution's path component: alphanumerics joined by '.', '_', '__' or runs of '-'
component = st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), alnum), max_size=2).flatmap(
    lambda rest: alnum.map(lambda first: first + "".join(sep + part for sep, part in rest))
)
path = st.lists(component, min_size=1, max_size=4).map("/".join)
label = st.tuples(st.text(MIXED, min_size=1, max_size=1), st.text(MIXED + "-", max_size=5), st.text(MIXED, max_size=1)).map(
    lambda t: t[0] + t[1] + t[2] if t[2] or not t[1] else t[0] + t[1].rstrip("-")
)
port = st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}")
host = st.one_of(
    st.lists(label, min_size=2, max_size=4).map(".".join),  # example.com, Registry.Example.COM
    st.sampled_from(["localhost", "LocalHost", "docker.io", "index.docker.io", "registry-1.docker.io", "[::1]",
                     "[fe80::1]", "127.0.0.1", "ghcr.io"]),
    st.tuples(st.text("ABCXYZ", min_size=1, max_size=1), st.text(MIXED, max_size=6)).map("".join),  # uppercase single label: a host, as in Docker
    st.tuples(label, port).map("".join),  # registry:5000
)
# a port added to hosts that have none yet
host_and_port = st.tuples(host, st.one_of(st.just(""), port)).map(
    lambda hp: hp[0] if ":" in hp[0].rsplit("]", 1)[-1] else hp[0] + hp[1]
)
tag = st.tuples(st.text(MIXED + "_", min_size=1, max_size=1), st.text(MIXED + "_.-", max_size=20)).map("".join)
digest = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
    st.binary(min_size=64, max_size=64).map(lambda b: "sha512:" + b.hex()),
)


@st.composite
def reference_texts(draw):
    text = draw(path)
    if draw(st.booleans()):
        text = draw(host_and_port) + "/" + text
    if draw(st.booleans()):
        text += ":" + draw(tag)
    if draw(st.booleans()):
        text += "@" + draw(digest)
    return text


def assert_round_trips(ref):
    again = parse_reference(str(ref))
    assert again == ref, (str(ref), again)
    assert str(again) == str(ref)


@BOUNDED
@given(reference_texts())
def test_reference_round_trip(text):
    try:
        ref = parse_reference(text)
    except ReferenceError_ as exc:
        assert "longer than" in str(exc) or "bad registry host" in str(exc), exc
        return
    assert_round_trips(ref)
    assert parse_reference(text, default_tag=None).digest == ref.digest
    if "@" in text:
        assert ref.digest == text.rsplit("@", 1)[1]
    assert ref.repository.endswith(text.split("@")[0].rsplit("/", 1)[-1].split(":")[0])
    assert ref.repository == ref.repository.lower()


reference_alphabet = st.sampled_from(list("abcxyzABZ0129:/@._-[]+ \t\nÀ日\x00") + ["sha256:", "docker.io/", "localhost", "//"])


@BOUNDED
@given(st.one_of(st.text(max_size=80), st.lists(reference_alphabet, max_size=30).map("".join)))
def test_reference_parse_raises_only_reference_errors(text):
    try:
        ref = parse_reference(text)
    except ReferenceError_ as exc:
        assert "\n" not in str(exc)
        return
    assert_round_trips(ref)  # whatever parses, formats back to itself


# ---------------------------------------------------------------- platforms

platform_part = st.tuples(st.text(LOWER, min_size=1, max_size=1), st.text(LOWER + "._-", max_size=8)).map("".join)
platforms = st.builds(
    Platform,
    st.sampled_from(["linux", "windows", "darwin", "freebsd"]) | platform_part,
    st.sampled_from(["amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"]) | platform_part,
    st.sampled_from(["", "", "v5", "v6", "v7", "v8", "v9"]),
)


@BOUNDED
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(list("/linuxarm64v8 .-_A\n") + ["linux/", "/v7"]), max_size=12).map("".join)))
def test_platform_parse_raises_only_platform_errors(text):
    try:
        p = Platform.parse(text)
    except PlatformError:
        return
    assert Platform.parse(str(p)) == p
    assert 2 <= str(p).count("/") + 1 <= 3


@BOUNDED
@given(platforms, platforms)
def test_platform_matching(wanted, entry):
    assert Platform.parse(str(wanted)) == wanted
    assert wanted.matches(wanted)
    bare = Platform(wanted.os, wanted.architecture)
    assert bare.matches(wanted)  # no variant asked: any variant of that os/architecture
    if wanted.matches(entry):
        assert (wanted.os, wanted.architecture) == (entry.os, entry.architecture)
        if wanted.variant:
            assert wanted.normalized_variant() == entry.normalized_variant()


# ---------------------------------------------------------------- parse_manifest never raises anything else

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_keys = st.sampled_from(
    ["mediaType", "digest", "size", "platform", "annotations", "os", "architecture", "variant", "manifests",
     "config", "layers", "schemaVersion", "subject", ATTESTATION_TYPE_KEY, ATTESTATION_DIGEST_KEY]
) | st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(json_keys, children, max_size=3),
    max_leaves=8,
)
#: without NaN, so that equality of parsed documents means something
finite_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
media_types = st.sampled_from([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST,
                               "application/vnd.docker.distribution.manifest.v1+json", "application/json", ""])
digest_like = st.one_of(digest, st.sampled_from(["sha256:abc", "md5:00", "", "sha256:" + "A" * 64]), json_scalars)
descriptor_like = st.fixed_dictionaries(
    {"mediaType": media_types | json_scalars, "digest": digest_like, "size": st.integers(-2, 10**20) | json_scalars},
    optional={
        "platform": st.fixed_dictionaries({}, optional={"os": st.sampled_from(["linux", "unknown"]) | json_values,
                                                        "architecture": st.sampled_from(["amd64", "arm64", "unknown"]) | json_values,
                                                        "variant": st.sampled_from(["v7", "v8"]) | json_values}) | json_values,
        "annotations": st.dictionaries(st.sampled_from([ATTESTATION_TYPE_KEY, ATTESTATION_DIGEST_KEY, "x"]),
                                       st.sampled_from([ATTESTATION_TYPE]) | digest_like) | json_values,
    },
)
manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.sampled_from([1, 2, 2, 2, "2", 2.0, True, None]),
        "mediaType": media_types | json_scalars,
        "manifests": st.lists(descriptor_like, max_size=4) | json_values,
        "config": descriptor_like | json_values,
        "layers": st.lists(descriptor_like, max_size=3) | json_values,
        "subject": descriptor_like | json_values,
        "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | json_values,
        "extra": json_values,
    },
)

valid_descriptor = st.fixed_dictionaries(
    {"mediaType": st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST, OCI_MANIFEST, OCI_INDEX]), "digest": digest,
     "size": st.integers(0, 10**6)},
    optional={
        "platform": st.fixed_dictionaries(
            {"os": st.sampled_from(["linux", "linux", "unknown", "windows"]),
             "architecture": st.sampled_from(["amd64", "arm64", "arm", "unknown"])},
            optional={"variant": st.sampled_from(["v6", "v7", "v8"])},
        ),
        "annotations": st.fixed_dictionaries({ATTESTATION_TYPE_KEY: st.just(ATTESTATION_TYPE)},
                                             optional={ATTESTATION_DIGEST_KEY: digest}),
    },
)


@st.composite
def nearly_valid_manifests(draw):
    """A valid index or image manifest, then one thing in it broken (or not): reaches the deeper checks."""
    kind = draw(st.sampled_from([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST]))
    doc: dict = {"schemaVersion": 2, "mediaType": kind}
    if kind in (OCI_INDEX, DOCKER_LIST):
        doc["manifests"] = draw(st.lists(valid_descriptor, max_size=5))
        targets = doc["manifests"]
    else:
        doc["config"] = draw(valid_descriptor)
        doc["layers"] = draw(st.lists(valid_descriptor, max_size=3))
        targets = [doc["config"], *doc["layers"]]
    mutation = draw(st.sampled_from(["none", "top", "descriptor", "drop"]))
    if mutation == "top":
        doc[draw(json_keys)] = draw(json_values)
    elif mutation == "descriptor" and targets:
        target = targets[draw(st.integers(0, len(targets) - 1))]
        target[draw(json_keys)] = draw(json_values)
    elif mutation == "drop":
        doc.pop(draw(st.sampled_from(sorted(doc))))
    return doc


def exercise(m):
    """Use a parsed manifest the way the copy engine does; only MirrorError may come out."""
    assert m.digest == sha256_digest(m.raw)
    if m.is_index:
        children = m.children
        for wanted in (None, [Platform("linux", "amd64")], [Platform("linux", "arm64", "v8")]):
            try:
                keep = select_children(m, wanted)
            except MirrorError:
                continue
            new = rewrite_index(m, keep, source="ghcr.io/a/b:c")
            assert new.media_type == m.media_type
            assert [c.digest for c in new.children] == [c.digest for c in keep]
        assert len(children) == len(m.data["manifests"])
    else:
        m.blobs
        m.subject


@BOUNDED
@given(st.binary(max_size=300), st.none() | media_types)
def test_parse_manifest_random_bytes(raw, content_type):
    try:
        m = parse_manifest(raw, content_type)
    except MirrorError:
        return
    try:
        exercise(m)
    except MirrorError:
        pass


@BOUNDED
@given(nearly_valid_manifests() | manifest_like | json_values, st.none() | media_types, st.booleans(),
       st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32", "utf-8-sig"]))
def test_parse_manifest_json_like(doc, content_type, indent, encoding):
    raw = json.dumps(doc, indent=2 if indent else None, ensure_ascii=False).encode(encoding, "surrogatepass")
    if encoding != "utf-8":  # manifests are UTF-8 JSON, without a byte-order mark
        try:
            parse_manifest(raw, content_type)
        except MirrorError as exc:
            assert "not valid JSON" in str(exc) or "over the" in str(exc)
            return
        raise AssertionError(f"{encoding} manifest accepted")
    try:
        m = parse_manifest(raw, content_type)
    except MirrorError:
        return
    try:
        exercise(m)
    except MirrorError:
        pass


# ---------------------------------------------------------------- rewrite_index

IMAGE_PLATFORMS = ["linux/amd64", "linux/arm64/v8", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/s390x",
                   "windows/amd64", "linux/ppc64le"]
annotation_text = st.text(st.sampled_from("aZ0 -\"\\\n\u00e9\u65e5\U0001f600\x00{}[],:"), max_size=8)


WHITESPACE = ["", " ", "\n", "\n  ", "\t", "\r\n"]


def _style(rng: random.Random, d: dict) -> str:
    """``d`` serialised as some tool might: key order, indentation, separators, escaping."""
    items = list(d.items())
    rng.shuffle(items)
    return json.dumps(
        dict(items),
        indent=rng.choice([None, None, 0, 2, 4, "\t"]),
        separators=rng.choice([None, (",", ":"), (", ", ": "), (" , ", " : ")]),
        ensure_ascii=rng.random() < 0.5,
        sort_keys=rng.random() < 0.5,
    )


@st.composite
def upstream_indexes(draw):
    """(raw bytes, content type, descriptor texts): an index as any upstream tool might have written it."""
    rng = random.Random(draw(st.integers(0, 2**32)))  # formatting choices: one draw, cheap to generate
    media_type = draw(st.sampled_from([OCI_INDEX, DOCKER_LIST]))
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    chosen = draw(st.lists(st.sampled_from(IMAGE_PLATFORMS), min_size=1, max_size=6))
    descs = []
    for i, plat in enumerate(chosen):
        os_, arch, *variant = plat.split("/")
        p = {"architecture": arch, "os": os_}
        if variant:
            p["variant"] = variant[0]
        d = {"mediaType": child_type, "digest": "sha256:" + hashlib.sha256(f"{i}{plat}".encode()).hexdigest(),
             "size": rng.randrange(10**9), "platform": p}
        if rng.random() < 0.3:
            d["annotations"] = draw(st.dictionaries(annotation_text, annotation_text, max_size=2))
        descs.append(d)
    for d in list(descs):
        if rng.random() < 0.5:  # a BuildKit attestation for this image
            descs.append({"mediaType": child_type, "digest": "sha256:" + hashlib.sha256(b"att" + d["digest"].encode()).hexdigest(),
                          "size": 840, "annotations": {ATTESTATION_TYPE_KEY: ATTESTATION_TYPE, ATTESTATION_DIGEST_KEY: d["digest"]},
                          "platform": {"architecture": "unknown", "os": "unknown"}})
    pieces = [_style(rng, d) for d in descs]

    def ws() -> str:
        return rng.choice(WHITESPACE)

    array = "[" + ws() + (ws() + "," + ws()).join(pieces) + ws() + "]"
    fields = [("schemaVersion", "2"), ("manifests", array)]
    if media_type == DOCKER_LIST or rng.random() < 0.7:
        fields.append(("mediaType", json.dumps(media_type)))
    if rng.random() < 0.5:
        annotations = draw(st.dictionaries(annotation_text, annotation_text, max_size=3))
        fields.append(("annotations", json.dumps(annotations, ensure_ascii=rng.random() < 0.5)))
    if rng.random() < 0.3:
        fields.append(("x-extra", json.dumps(draw(finite_json_values))))
    rng.shuffle(fields)
    body = ("," + ws()).join(f"{json.dumps(key)}{ws()}:{ws()}{value}" for key, value in fields)
    raw = ("{" + ws() + body + ws() + "}").encode()
    has_media_type = any(key == "mediaType" for key, _ in fields)
    content_type = media_type if not has_media_type or rng.random() < 0.5 else None
    return raw, content_type, pieces


@BOUNDED
@given(upstream_indexes(), st.data())
def test_rewrite_keeps_kept_descriptors_byte_identical(upstream, data):
    raw, content_type, pieces = upstream
    m = parse_manifest(raw, content_type)
    assert len(m.children) == len(pieces)
    mask = data.draw(st.lists(st.booleans(), min_size=len(pieces), max_size=len(pieces)))
    keep = [c for c, k in zip(m.children, mask) if k]
    source = data.draw(st.sampled_from([None, "docker.io/library/golang:1.22", "ghcr.io/a/b@sha256:" + "0" * 64]))
    new = rewrite_index(m, keep, source=source)

    assert new.media_type == m.media_type
    assert new.digest == sha256_digest(new.raw)
    assert [c.digest for c in new.children] == [c.digest for c in keep]
    if all(mask):
        assert new.raw == m.raw and new.digest == m.digest
        return
    # each kept descriptor's text is byte-identical, found once in each, in the original order
    at = []
    for piece, k in zip(pieces, mask):
        if k:
            needle = piece.encode()
            assert raw.count(needle) == 1
            assert new.raw.count(needle) == 1
            at.append(new.raw.index(needle))
    assert at == sorted(at)
    # deterministic: twice, and from a fresh parse of the same upstream bytes
    assert rewrite_index(m, keep, source=source).raw == new.raw
    fresh = parse_manifest(bytes(raw), content_type)
    fresh_keep = [c for c, k in zip(fresh.children, mask) if k]
    assert rewrite_index(fresh, fresh_keep, source=source).digest == new.digest
    # the rest of the index is carried over; an OCI index records where it came from
    others = {k: v for k, v in m.data.items() if k not in ("manifests", "annotations")}
    assert {k: v for k, v in new.data.items() if k not in ("manifests", "annotations")} == others
    if m.media_type == OCI_INDEX and source:
        assert new.data["annotations"] == {**(m.data.get("annotations") or {}),
                                           ANNOTATION_SOURCE_REF: source, ANNOTATION_SOURCE_DIGEST: m.digest}
    else:
        assert new.data.get("annotations") == m.data.get("annotations")


@BOUNDED
@given(upstream_indexes(), st.lists(st.sampled_from(IMAGE_PLATFORMS + ["linux/arm", "linux/riscv64"]), min_size=1, max_size=3))
def test_select_children_subset_rules(upstream, wanted_texts):
    raw, content_type, _ = upstream
    m = parse_manifest(raw, content_type)
    wanted = [Platform.parse(t) for t in wanted_texts]
    children = m.children
    try:
        keep = select_children(m, wanted)
    except MirrorError as exc:
        missing = [w for w in wanted if not any(w.matches(c.platform) for c in children if c.platform and not c.is_attestation)]
        assert missing and str(missing[0]) in str(exc)
        return
    position = {id(c.raw): i for i, c in enumerate(children)}
    indexes = [position[id(c.raw)] for c in keep]
    assert indexes == sorted(set(indexes))  # a subsequence of the index, in its order
    images = [c for c in keep if not c.is_attestation]
    for c in children:
        if c.is_attestation:
            continue
        assert any(i.raw is c.raw for i in images) == any(w.matches(c.platform) for w in wanted)
    for c in keep:
        if c.is_attestation:
            assert c.attests in {i.digest for i in images}
    for c in children:
        if c.is_attestation and c.attests in {i.digest for i in images}:
            assert any(k.raw is c.raw for k in keep)
    new = rewrite_index(m, keep, source="ghcr.io/x/y:z")
    assert [c.digest for c in new.children] == [c.digest for c in keep]
    assert (new.digest == m.digest) == (len(keep) == len(children))
