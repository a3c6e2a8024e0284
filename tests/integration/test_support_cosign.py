"""tests/support/cosign.py signs as cosign does and its verifier accepts exactly the valid signatures,
against real registries (plain distribution 2.8, and the same behind a ReferrersProxy)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.cosign import (
    COSIGN_SIG_ARTIFACT_TYPE,
    DSSE_ENVELOPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    CosignKey,
    VerificationError,
    attach_sbom,
    attest,
    read_sbom,
    sign,
    signature_tag,
    simple_signing_payload,
    verify,
    verify_attestation,
)
from tests.support.images import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryError,
    build_image,
    build_index,
    get_blob,
    get_manifest,
    list_tags,
    push_blob,
    push_index,
    push_manifest,
    sha256_digest,
)
from tests.support.referrers import referrers_tag

REPO = "team/app"


@pytest.fixture(scope="module")
def key() -> CosignKey:
    return CosignKey.generate()


@pytest.fixture
def signed_source(registry):
    index = build_index([build_image("linux/amd64", seed=31), build_image("linux/arm64/v8", seed=31)])
    push_index(registry, REPO, index, tag="v1")
    return index


def test_sign_writes_the_sig_tag_as_cosign_does(registry, signed_source, key):
    index = signed_source
    hexa = index.digest.split(":")[1]
    pushed = sign(registry, REPO, index.digest, key)
    assert pushed.tag == f"sha256-{hexa}.sig" == signature_tag(index.digest)
    assert list_tags(registry, REPO) == sorted(["v1", pushed.tag])

    body, content_type, digest = get_manifest(registry, REPO, pushed.tag)
    assert (body, content_type, digest) == (pushed.manifest, OCI_MANIFEST, pushed.digest)
    assert b"\n" not in body and b": " not in body  # compact, as go-containerregistry writes it
    manifest = json.loads(body)
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    (layer,) = manifest["layers"]
    assert list(layer) == ["mediaType", "size", "digest", "annotations"]
    assert layer["mediaType"] == SIMPLE_SIGNING == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert list(layer["annotations"]) == [SIGNATURE_ANNOTATION] == ["dev.cosignproject.cosign/signature"]

    payload = get_blob(registry, REPO, layer["digest"])
    assert payload == (
        '{"critical":{"identity":{"docker-reference":"%s/team/app"},"image":{"docker-manifest-digest":"%s"},'
        '"type":"cosign container image signature"},"optional":null}' % (registry.host, index.digest)
    ).encode()
    assert payload == simple_signing_payload(f"{registry.host}/{REPO}", index.digest)
    config = json.loads(get_blob(registry, REPO, manifest["config"]["digest"]))
    assert config == {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        "config": {},
    }
    # the signature is base64 DER ECDSA P-256/SHA-256 over the payload bytes: check it with the library directly
    public = serialization.load_pem_public_key(key.public_pem)
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    der = base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION], validate=True)
    public.verify(der, payload, ec.ECDSA(hashes.SHA256()))  # raises if not


def test_verify_accepts_valid_and_names_why_others_fail(registry, signed_source, key):
    index = signed_source
    child = index.images[0]
    with pytest.raises(VerificationError, match=r"no tag sha256-[0-9a-f]{64}\.sig"):
        verify(registry, REPO, index.digest, key)

    sign(registry, REPO, index.digest, key)
    (found,) = verify(registry, REPO, index.digest, key.public_pem)
    assert found.source == "tag" and found.docker_reference == f"{registry.host}/{REPO}"
    assert found.payload["critical"]["image"]["docker-manifest-digest"] == index.digest
    assert verify(registry, REPO, index.digest, key, docker_reference=f"{registry.host}/{REPO}")
    with pytest.raises(VerificationError, match="names reference"):
        verify(registry, REPO, index.digest, key, docker_reference="docker.io/library/other")

    other = CosignKey.generate()
    with pytest.raises(VerificationError, match="does not verify with the public key"):
        verify(registry, REPO, index.digest, other)

    # a signature of another digest, filed under this digest's tag (what a careless mirror could do)
    sig_body, _, _ = get_manifest(registry, REPO, signature_tag(index.digest))
    push_manifest(registry, REPO, signature_tag(child.digest), sig_body, OCI_MANIFEST)
    with pytest.raises(VerificationError, match=f"payload names {index.digest}, not {child.digest}"):
        verify(registry, REPO, child.digest, key)

    # a payload changed after signing, its annotation kept
    manifest = json.loads(sig_body)
    payload = get_blob(registry, REPO, manifest["layers"][0]["digest"])
    tampered = payload.replace(b"cosign container image signature", b"cosign container image signaturE")
    forged = simple_signing_payload(f"{registry.host}/{REPO}", child.digest)
    for bad in (tampered, forged):
        push_blob(registry, REPO, sha256_digest(bad), bad)
        layer = {**manifest["layers"][0], "size": len(bad), "digest": sha256_digest(bad)}
        body = json.dumps({**manifest, "layers": [layer]}, separators=(",", ":")).encode()
        push_manifest(registry, REPO, signature_tag(child.digest), body, OCI_MANIFEST)
        with pytest.raises(VerificationError) as failed:
            verify(registry, REPO, child.digest, key)
        assert ("payload type" if bad is tampered else "does not verify with the public key") in str(failed.value)


def test_signing_again_appends_a_layer_and_replace_keeps_one(registry, signed_source, key):
    index = signed_source
    first = sign(registry, REPO, index.digest, key)
    rotated = CosignKey.generate()
    second = sign(registry, REPO, index.digest, rotated)
    assert len(second.layers) == 2 and second.layers[0] == first.layers[0]
    assert second.digest != first.digest  # the tag moved (cosign re-pushes it)
    assert [v.source for v in verify(registry, REPO, index.digest, key)] == ["tag"]
    assert [v.source for v in verify(registry, REPO, index.digest, rotated)] == ["tag"]
    third = sign(registry, REPO, index.digest, rotated, replace=True)
    assert len(third.layers) == 1
    with pytest.raises(VerificationError):
        verify(registry, REPO, index.digest, key)


def test_referrer_mode_on_distribution_uses_the_tag_schema(registry, signed_source, key):
    index = signed_source
    pushed = sign(registry, REPO, index.digest, key, mode="referrer")
    assert pushed.tag is None and pushed.oci_subject is None  # distribution 2.8 has no referrers API
    manifest = json.loads(get_manifest(registry, REPO, pushed.digest)[0])
    assert manifest["artifactType"] == manifest["config"]["mediaType"] == COSIGN_SIG_ARTIFACT_TYPE
    assert manifest["subject"] == {"mediaType": OCI_INDEX, "size": index.size, "digest": index.digest}
    assert signature_tag(index.digest) not in list_tags(registry, REPO)
    fallback = json.loads(get_manifest(registry, REPO, referrers_tag(index.digest))[0])
    assert fallback["manifests"] == [
        {"mediaType": OCI_MANIFEST, "digest": pushed.digest, "size": len(pushed.manifest),
         "artifactType": COSIGN_SIG_ARTIFACT_TYPE}
    ]
    (found,) = verify(registry, REPO, index.digest, key)
    assert found.source == "referrer" and found.manifest_digest == pushed.digest
    with pytest.raises(VerificationError, match="no tag"):
        verify(registry, REPO, index.digest, key, sources=("tag",))


def test_referrer_mode_behind_a_referrers_api(registry, proxy_factory, signed_source, key):
    index = signed_source
    front = proxy_factory(registry, referrers=True)
    pushed = sign(front, REPO, index.digest, key, mode="referrer")
    assert pushed.oci_subject == index.digest
    assert referrers_tag(index.digest) not in list_tags(registry, REPO)  # no fallback index needed
    (found,) = verify(front, REPO, index.digest, key, sources=("referrer",))
    assert found.manifest_digest == pushed.digest
    assert front.count("GET", f"/referrers/{index.digest}?artifactType=") == 1
    with pytest.raises(VerificationError, match="no referrer"):
        verify(registry, REPO, index.digest, key, sources=("referrer",))  # the bare registry cannot list it


def test_attestation_and_sbom_tags(registry, signed_source, key):
    index = signed_source
    predicate, slsa = {"builder": {"id": "https://example.invalid/builder"}}, "https://slsa.dev/provenance/v0.2"
    pushed = attest(registry, REPO, index.digest, key, slsa, predicate)
    assert pushed.tag == f"sha256-{index.digest.split(':')[1]}.att"
    (layer,) = pushed.layers
    assert layer["mediaType"] == DSSE_ENVELOPE
    assert layer["annotations"] == {SIGNATURE_ANNOTATION: "", "predicateType": slsa}
    envelope = json.loads(get_blob(registry, REPO, layer["digest"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    (statement,) = verify_attestation(registry, REPO, index.digest, key, predicate_type=slsa)
    assert statement["predicate"] == predicate
    assert statement["subject"][0]["digest"] == {"sha256": index.digest.split(":")[1]}
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_attestation(registry, REPO, index.digest, CosignKey.generate())
    with pytest.raises(VerificationError, match="predicate type"):
        verify_attestation(registry, REPO, index.digest, key, predicate_type="https://spdx.dev/Document")

    sbom = b'{"spdxVersion":"SPDX-2.3","name":"app"}'
    attached = attach_sbom(registry, REPO, index.digest, sbom)
    assert attached.tag.endswith(".sbom") and "annotations" not in attached.layers[0]
    assert read_sbom(registry, REPO, index.digest) == ("text/spdx+json", sbom)


def test_verifies_a_copy_made_by_skopeo_into_the_ecr_stand_in(registry, ecr, signed_source, key, tmp_path):
    """The verifier reads any registry holding the bytes: skopeo copies image and signature tag (as cosign copy
    does) into the ECR stand-in, and the copy verifies there, through ECR's Basic auth and its blob redirects."""
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is required (apt-get install -y skopeo)"
    index = signed_source
    sign(registry, REPO, index.digest, key)
    ecr.create_repository("mirror/app")  # ECR does not create repositories on push
    user, password = ecr.credentials
    for ref in ("v1", signature_tag(index.digest)):
        subprocess.run(
            [skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
             f"--dest-creds={user}:{password}",
             f"docker://{registry.host}/{REPO}:{ref}", f"docker://{ecr.host}/mirror/app:{ref}"],
            check=True, capture_output=True, timeout=120,
        )
    (found,) = verify(ecr, "mirror/app", index.digest, key, auth=ecr.auth)
    assert found.docker_reference == f"{registry.host}/{REPO}"  # the signer's name, not the mirror's
    with pytest.raises(RegistryError, match="HTTP 401"):  # without credentials the mirror refuses
        verify(ecr, "mirror/app", index.digest, key)
