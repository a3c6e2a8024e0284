"""Sign images the way cosign does, and verify signatures at a mirror with code of our own.

    key = CosignKey.generate()                              # ECDSA P-256, made by the test
    sign(registry, "team/app", index.digest, key)           # pushes the `sha256-<hex>.sig` tag
    verify(mirror, "team/app", index.digest, key.public_key)   # raises VerificationError unless one verifies

What cosign writes (sigstore/cosign ``pkg/oci/static/signature.go``, ``pkg/oci/remote/remote.go`` and
``write.go``, ``pkg/types/media.go``, ``cmd/cosign/cli/attach/sbom.go``; sigstore ``pkg/signature/payload``):

- The payload is the "simple signing" JSON ``{"critical":{"identity":{"docker-reference":REF},"image":
  {"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},"optional":null}``; the
  signature is ECDSA P-256 over SHA-256 of the payload bytes, ASN.1 DER, base64 in the layer annotation
  ``dev.cosignproject.cosign/signature``.
- ``.sig``: an OCI image manifest (compact JSON, go-containerregistry's field order) whose config is the
  near-empty config go-containerregistry writes for ``empty.Image`` plus layers, and one layer per signature
  of media type ``application/vnd.dev.cosign.simplesigning.v1+json``. Tag ``sha256-<hex>.sig``; signing again
  appends a layer and re-pushes the tag.
- ``.att``: same shape, layers ``application/vnd.dsse.envelope.v1+json`` holding a DSSE envelope of an in-toto
  statement (signature in the envelope; the layer annotation is empty), annotation ``predicateType``.
- ``.sbom``: ``cosign attach sbom``: one layer of the SBOM itself (``text/spdx+json`` by default), unsigned.
- OCI 1.1 mode (``--registry-referrers-mode=oci-1-1``): the ``.sig`` manifest with ``artifactType`` and
  config media type ``application/vnd.dev.cosign.artifact.sig.v1+json`` and a ``subject``, pushed by digest.
  (cosign v3's Sigstore-bundle referrers are not built here.)

:func:`verify` is independent of the product: it reads the registry over plain httpx (the support helpers),
finds signatures by the cosign tag and by the referrers API (or the referrers tag schema), and checks that
the payload names the expected digest and that the signature verifies with the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .images import (
    IN_TOTO,
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_MANIFEST,
    RegistryError,
    _base,
    _check,
    _ClientScope,
    get_blob,
    get_manifest,
    push_blob,
    sha256_digest,
)
from .referrers import list_referrers, referrer_descriptor, referrers_tag, update_referrers_tag

__all__ = [
    "COSIGN_SIG_ARTIFACT_TYPE",
    "DSSE_ENVELOPE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "CosignKey",
    "Pushed",
    "VerificationError",
    "VerifiedSignature",
    "attach_sbom",
    "attest",
    "attestation_tag",
    "read_sbom",
    "sbom_tag",
    "sign",
    "signature_tag",
    "simple_signing_payload",
    "verify",
    "verify_attestation",
]

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIG_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGNATURE_TYPE = "cosign container image signature"
IN_TOTO_STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
SPDX_TEXT_JSON = "text/spdx+json"
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _go_json(obj: Any) -> bytes:
    """Compact JSON as Go's encoding/json writes it (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


# ---------------------------------------------------------------------- keys and payloads


@dataclass(frozen=True)
class CosignKey:
    """An ECDSA P-256 key pair, as ``cosign generate-key-pair`` makes (kept in memory)."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> CosignKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def public_pem(self) -> bytes:
        """The public key as ``cosign.pub`` holds it (PEM SubjectPublicKeyInfo)."""
        return self.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        """ECDSA over SHA-256 of ``data``, ASN.1 DER (what cosign stores, base64'd)."""
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))


def simple_signing_payload(docker_reference: str, digest: str) -> bytes:
    """The payload cosign signs for an image (sigstore ``payload.Cosign``, "simple signing" format)."""
    return _go_json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": None,
        }
    )


def _hex(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    if algorithm != "sha256" or len(hexa) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexa


def signature_tag(digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>.sig`` (cosign ``remote.SignatureTag``)."""
    return f"sha256-{_hex(digest)}.sig"


def attestation_tag(digest: str) -> str:
    return f"sha256-{_hex(digest)}.att"


def sbom_tag(digest: str) -> str:
    return f"sha256-{_hex(digest)}.sbom"


# ---------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Pushed:
    """A signature/attestation/SBOM manifest as pushed."""

    manifest: bytes
    digest: str
    tag: str | None  # the cosign tag, or None (OCI 1.1 mode: pushed by digest)
    layers: tuple[dict[str, Any], ...]  # the layer descriptors (annotations included)
    payloads: tuple[bytes, ...]  # the layer blobs, layer for layer
    oci_subject: str | None = None  # the OCI-Subject header of the PUT answer (OCI 1.1 mode)


def _cosign_config(diff_ids: list[str]) -> bytes:
    """The config go-containerregistry writes for ``empty.Image`` with these layers appended."""
    return _go_json(
        {
            "architecture": "",
            "created": _GO_ZERO_TIME,
            "history": [{"created": _GO_ZERO_TIME} for _ in diff_ids],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }
    )


def _layer(media_type: str, payload: bytes, annotations: Mapping[str, str] | None) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": media_type, "size": len(payload), "digest": sha256_digest(payload)}
    if annotations is not None:
        desc["annotations"] = dict(sorted(annotations.items()))  # Go marshals map keys sorted
    return desc


def _existing_layers(http: httpx.Client, base: str, repo: str, tag: str) -> list[tuple[dict[str, Any], bytes]]:
    try:
        body, _, _ = get_manifest(base, repo, tag, client=http)
    except RegistryError as exc:
        if exc.status == 404:
            return []
        raise
    layers = json.loads(body).get("layers") or []
    return [(desc, get_blob(base, repo, desc["digest"], client=http)) for desc in layers]


def _push_cosign_manifest(
    http: httpx.Client,
    base: str,
    repo: str,
    layers: list[tuple[dict[str, Any], bytes]],
    *,
    tag: str | None,
    subject: dict[str, Any] | None = None,
    artifact_type: str | None = None,
) -> Pushed:
    """Push blobs and a cosign-shaped manifest (by ``tag``, or by digest when ``tag`` is None)."""
    config = _cosign_config([desc["digest"] for desc, _ in layers])
    config_desc = {"mediaType": artifact_type or OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)}
    push_blob(base, repo, config_desc["digest"], config, client=http)
    for desc, payload in layers:
        push_blob(base, repo, desc["digest"], payload, client=http)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [desc for desc, _ in layers],
    }
    if subject is not None:
        manifest["subject"] = subject
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type  # cosign's referrerManifest appends it after v1.Manifest
    body = _go_json(manifest)
    digest = sha256_digest(body)
    url = f"{base}/v2/{repo}/manifests/{tag or digest}"
    response = _check(
        http.put(url, content=body, headers={"Content-Type": OCI_MANIFEST}), f"PUT cosign manifest {tag or digest}", 201
    )
    return Pushed(
        body,
        digest,
        tag,
        tuple(desc for desc, _ in layers),
        tuple(payload for _, payload in layers),
        response.headers.get("OCI-Subject"),
    )


def _subject(http: httpx.Client, base: str, repo: str, digest: str) -> dict[str, Any]:
    """The subject descriptor from a HEAD (as cosign's ``remoteHead``; a HEAD is not a pull)."""
    url = f"{base}/v2/{repo}/manifests/{digest}"
    response = _check(http.head(url, headers={"Accept": MANIFEST_ACCEPT}), f"HEAD manifest {digest}", 200)
    return {
        "mediaType": response.headers["Content-Type"],
        "size": int(response.headers["Content-Length"]),
        "digest": digest,
    }


def sign(
    registry: object,
    repo: str,
    digest: str,
    key: CosignKey,
    auth: httpx.Auth | None = None,
    *,
    docker_reference: str | None = None,
    mode: str = "tag",
    replace: bool = False,
    tag_schema: bool | None = None,
    client: httpx.Client | None = None,
) -> Pushed:
    """Sign ``digest`` in ``repo`` with ``key`` as ``cosign sign --key`` does (no transparency log).

    ``docker_reference`` defaults to ``<registry host>/<repo>``. ``mode="tag"`` writes the
    ``sha256-<hex>.sig`` tag, appending to the signatures already there (``replace=True``: only this
    one). ``mode="referrer"`` writes the OCI 1.1 form: the signature manifest with ``subject`` and
    ``artifactType`` by digest; when the registry answers without ``OCI-Subject`` the referrers tag
    schema index is updated (``tag_schema`` as in :func:`tests.support.referrers.push_referrer`).
    """
    if mode not in ("tag", "referrer"):
        raise ValueError("mode must be 'tag' or 'referrer'")
    base = _base(registry)
    reference = docker_reference or f"{httpx.URL(base).netloc.decode()}/{repo}"
    payload = simple_signing_payload(reference, digest)
    b64 = base64.b64encode(key.sign(payload)).decode()
    layer = (_layer(SIMPLE_SIGNING, payload, {SIGNATURE_ANNOTATION: b64}), payload)
    with _ClientScope(client, auth) as http:
        if mode == "tag":
            tag = signature_tag(digest)
            layers = [] if replace else _existing_layers(http, base, repo, tag)
            return _push_cosign_manifest(http, base, repo, [*layers, layer], tag=tag)
        subject = _subject(http, base, repo, digest)
        pushed = _push_cosign_manifest(
            http, base, repo, [layer], tag=None, subject=subject, artifact_type=COSIGN_SIG_ARTIFACT_TYPE
        )
        if tag_schema or (tag_schema is None and pushed.oci_subject is None):
            update_referrers_tag(base, repo, digest, referrer_descriptor(pushed.manifest, OCI_MANIFEST), client=http)
        return pushed


def _pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (secure-systems-lab/dsse ``protocol.md``)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def attest(
    registry: object,
    repo: str,
    digest: str,
    key: CosignKey,
    predicate_type: str,
    predicate: Mapping[str, Any],
    auth: httpx.Auth | None = None,
    *,
    replace: bool = False,
    client: httpx.Client | None = None,
) -> Pushed:
    """``cosign attest --key --type <predicate_type>``: a signed in-toto statement in the ``.att`` tag."""
    statement = _go_json(
        {
            "_type": IN_TOTO_STATEMENT_V01,
            "predicateType": predicate_type,
            "subject": [{"name": repo, "digest": {"sha256": _hex(digest)}}],
            "predicate": dict(predicate),
        }
    )
    signature = base64.b64encode(key.sign(_pae(IN_TOTO, statement))).decode()
    envelope = _go_json(
        {
            "payloadType": IN_TOTO,
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": signature}],
        }
    )
    layer = (_layer(DSSE_ENVELOPE, envelope, {SIGNATURE_ANNOTATION: "", "predicateType": predicate_type}), envelope)
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        tag = attestation_tag(digest)
        layers = [] if replace else _existing_layers(http, base, repo, tag)
        return _push_cosign_manifest(http, base, repo, [*layers, layer], tag=tag)


def attach_sbom(
    registry: object,
    repo: str,
    digest: str,
    sbom: bytes,
    auth: httpx.Auth | None = None,
    *,
    media_type: str = SPDX_TEXT_JSON,
    client: httpx.Client | None = None,
) -> Pushed:
    """``cosign attach sbom``: the SBOM bytes as the one layer of the ``.sbom`` tag (replaced, not appended)."""
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        return _push_cosign_manifest(http, base, repo, [(_layer(media_type, sbom, None), sbom)], tag=sbom_tag(digest))


# ---------------------------------------------------------------------- verifying


class VerificationError(Exception):
    """No signature verified; the message says what was found and why each one failed."""


@dataclass(frozen=True)
class VerifiedSignature:
    source: str  # "tag" (sha256-<hex>.sig) or "referrer" (OCI 1.1)
    manifest_digest: str  # the signature manifest that held it
    docker_reference: str  # what the payload names as the image's reference (the signer's name for it)
    payload: dict[str, Any]


def _public_key(key: object) -> ec.EllipticCurvePublicKey:
    if isinstance(key, CosignKey):
        return key.public_key
    if isinstance(key, bytes | str):
        loaded = serialization.load_pem_public_key(key.encode() if isinstance(key, str) else key)
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise TypeError("not an ECDSA public key")
        return loaded
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key
    raise TypeError(f"not a public key: {type(key).__name__}")


def _signature_manifests(
    http: httpx.Client, base: str, repo: str, digest: str, sources: tuple[str, ...], problems: list[str]
) -> list[tuple[str, str, dict[str, Any]]]:
    """``(source, manifest digest, manifest)`` of every signature manifest found for ``digest``."""
    found = []
    if "tag" in sources:
        tag = signature_tag(digest)
        try:
            body, _, manifest_digest = get_manifest(base, repo, tag, client=http)
            found.append(("tag", manifest_digest, json.loads(body)))
        except RegistryError as exc:
            if exc.status != 404:
                raise
            problems.append(f"no tag {tag}")
    if "referrer" in sources:
        descriptors = list_referrers(base, repo, digest, COSIGN_SIG_ARTIFACT_TYPE, client=http)
        if not descriptors:
            where = f"referrers API or {referrers_tag(digest)}"
            problems.append(f"no referrer of type {COSIGN_SIG_ARTIFACT_TYPE} ({where})")
        for desc in descriptors:
            body, _, manifest_digest = get_manifest(base, repo, desc["digest"], client=http)
            manifest = json.loads(body)
            if (manifest.get("subject") or {}).get("digest") != digest:
                problems.append(f"referrer {manifest_digest}: subject is not {digest}")
                continue
            found.append(("referrer", manifest_digest, manifest))
    return found


def verify(
    registry: object,
    repo: str,
    digest: str,
    public_key: object,
    auth: httpx.Auth | None = None,
    *,
    docker_reference: str | None = None,
    sources: tuple[str, ...] = ("tag", "referrer"),
    client: httpx.Client | None = None,
) -> list[VerifiedSignature]:
    """Every cosign signature of ``digest`` in ``repo`` that verifies with ``public_key``.

    ``public_key``: a :class:`CosignKey`, an EC public key, or PEM. For each simple-signing layer of each
    signature manifest found (``sources``): the blob's sha256 must match its descriptor, the payload's
    ``critical.image.docker-manifest-digest`` must be ``digest`` and its type cosign's, and the base64
    DER signature in the ``dev.cosignproject.cosign/signature`` annotation must verify (ECDSA P-256,
    SHA-256). ``docker_reference``, if given, must equal the payload's identity (cosign does not check it
    by default: a mirror's name differs from the signer's). Raises :class:`VerificationError` if none does.
    """
    key = _public_key(public_key)
    base = _base(registry)
    problems: list[str] = []
    verified: list[VerifiedSignature] = []
    with _ClientScope(client, auth) as http:
        for source, manifest_digest, manifest in _signature_manifests(http, base, repo, digest, sources, problems):
            for layer in manifest.get("layers") or []:
                if layer.get("mediaType") != SIMPLE_SIGNING:
                    continue
                where = f"{source} {manifest_digest} layer {layer.get('digest')}"
                blob = get_blob(base, repo, layer["digest"], client=http)
                problem = _check_simple_signing(layer, blob, digest, key, docker_reference)
                if problem:
                    problems.append(f"{where}: {problem}")
                    continue
                payload = json.loads(blob)
                reference = payload["critical"]["identity"]["docker-reference"]
                verified.append(VerifiedSignature(source, manifest_digest, reference, payload))
    if not verified:
        raise VerificationError(f"no valid signature for {repo}@{digest}: " + "; ".join(problems or ["nothing found"]))
    return verified


def _check_simple_signing(
    layer: Mapping[str, Any], blob: bytes, digest: str, key: ec.EllipticCurvePublicKey, reference: str | None
) -> str | None:
    """Why this signature layer does not verify, or None."""
    if "sha256:" + hashlib.sha256(blob).hexdigest() != layer.get("digest"):
        return "payload does not match its digest"
    try:
        payload = json.loads(blob)
        critical = payload["critical"]
        named = critical["image"]["docker-manifest-digest"]
        kind = critical["type"]
        identity = critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError):
        return "payload is not a simple-signing document"
    if kind != SIGNATURE_TYPE:
        return f"payload type is {kind!r}"
    if named != digest:
        return f"payload names {named}, not {digest}"
    if reference is not None and identity != reference:
        return f"payload names reference {identity!r}, not {reference!r}"
    encoded = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
    if not encoded:
        return f"no {SIGNATURE_ANNOTATION} annotation"
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError:
        return f"{SIGNATURE_ANNOTATION} is not base64"
    if not _verifies(key, signature, blob):
        return "signature does not verify with the public key"
    return None


def verify_attestation(
    registry: object,
    repo: str,
    digest: str,
    public_key: object,
    auth: httpx.Auth | None = None,
    *,
    predicate_type: str | None = None,
    client: httpx.Client | None = None,
) -> list[dict[str, Any]]:
    """The in-toto statements in the ``.att`` tag of ``digest`` whose DSSE signature verifies with
    ``public_key`` and whose subject is ``digest`` (and of ``predicate_type``, if given).

    Raises :class:`VerificationError` if there is none.
    """
    key = _public_key(public_key)
    base = _base(registry)
    problems: list[str] = []
    statements: list[dict[str, Any]] = []
    with _ClientScope(client, auth) as http:
        try:
            body, _, _ = get_manifest(base, repo, attestation_tag(digest), client=http)
        except RegistryError as exc:
            if exc.status != 404:
                raise
            raise VerificationError(f"no tag {attestation_tag(digest)} in {repo}") from exc
        for layer in json.loads(body).get("layers") or []:
            if layer.get("mediaType") != DSSE_ENVELOPE:
                continue
            blob = get_blob(base, repo, layer["digest"], client=http)
            try:
                envelope = json.loads(blob)
                statement_bytes = base64.b64decode(envelope["payload"])
                statement = json.loads(statement_bytes)
                signatures = [base64.b64decode(s["sig"]) for s in envelope["signatures"]]
            except (ValueError, KeyError, TypeError):
                problems.append(f"layer {layer['digest']}: not a DSSE envelope")
                continue
            if envelope.get("payloadType") != IN_TOTO:
                problems.append(f"layer {layer['digest']}: payload type {envelope.get('payloadType')!r}")
                continue
            if not any(_verifies(key, sig, _pae(IN_TOTO, statement_bytes)) for sig in signatures):
                problems.append(f"layer {layer['digest']}: signature does not verify")
                continue
            subjects = [s.get("digest", {}).get("sha256") for s in statement.get("subject") or []]
            if _hex(digest) not in subjects:
                problems.append(f"layer {layer['digest']}: statement is not about {digest}")
                continue
            if predicate_type is not None and statement.get("predicateType") != predicate_type:
                problems.append(f"layer {layer['digest']}: predicate type {statement.get('predicateType')!r}")
                continue
            statements.append(statement)
    if not statements:
        raise VerificationError(f"no valid attestation for {repo}@{digest}: " + "; ".join(problems or ["none"]))
    return statements


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def read_sbom(
    registry: object, repo: str, digest: str, auth: httpx.Auth | None = None, *, client: httpx.Client | None = None
) -> tuple[str, bytes]:
    """``(media type, bytes)`` of the SBOM in the ``.sbom`` tag of ``digest`` (RegistryError if absent)."""
    base = _base(registry)
    with _ClientScope(client, auth) as http:
        body, _, _ = get_manifest(base, repo, sbom_tag(digest), client=http)
        (layer,) = json.loads(body)["layers"]
        return layer["mediaType"], get_blob(base, repo, layer["digest"], client=http)
