"""What the demo puts upstream, and how it reads the result back (independently of ecr_mirror).

Upstream (a local registry playing Docker Hub), built locally with real gzip'd tar layers and
real image configs:

- ``library/golang:1.19.2``: a Docker manifest list of linux/amd64 and linux/arm64/v8, shaped like
  the official image of that tag (Docker schema 2 manifests, Go's environment in the config), signed
  as ``cosign sign --key`` does (the ``sha256-<digest>.sig`` tag) with a key made for the demo;
- ``team/app:v1.2.0``, ``v1.9.0``, ``v1.10.0`` (and ``latest``): OCI indexes as BuildKit writes
  them, each platform followed by its attestation manifest (platform ``unknown/unknown``);
- ``team/tool:1.0-amd64`` and ``team/tool:1.0-arm64``: single-architecture images, what the first
  half of the manual flow (pull per platform, retag, push) leaves behind.

Reading back uses :mod:`tests.support.images` (plain httpx), and the platform choice a pulling
host makes is implemented here from the OCI image-index rules, so the demo does not check the
product with itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support import images as im
from tests.support.cosign import CosignKey, sign

GOLANG_TAG = "1.19.2"
APP_TAGS = ("v1.2.0", "v1.9.0", "v1.10.0")
APP_PATTERN = r"v1\.[0-9]+\.[0-9]+"
APP_KEEP_LATEST = 2
TOOL_TAG = "1.0"

_CREATED = "2022-10-05T01:12:45Z"
_GO_PATH = "/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MiB = 1024 * 1024


def docker_image(platform: str, layers: list[tuple[str, int]], *, seed: int, env: list[str], cmd: list[str],
                 workdir: str = "") -> im.Image:
    """A Docker schema 2 image (``application/vnd.docker.distribution.manifest.v2+json``).

    ``layers``: (what the layer is, bytes of content); content is deterministic from ``seed``.
    """
    plat = im.parse_platform(platform)
    built = [im.make_layer(seed * 1000 + i, size, label=f"{plat['architecture']}-{label}")
             for i, (label, size) in enumerate(layers)]
    config: dict[str, Any] = {
        "architecture": plat["architecture"],
        **({"variant": plat["variant"]} if "variant" in plat else {}),
        "config": {"Env": env, "Cmd": cmd, "WorkingDir": workdir},
        "created": _CREATED,
        "history": [{"created": _CREATED, "created_by": f"/bin/sh -c #(nop) {label}"} for label, _ in layers],
        "os": plat["os"],
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_digest = im.sha256_digest(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": im.DOCKER_MANIFEST,
        "config": {"mediaType": im.DOCKER_CONFIG, "size": len(config_bytes), "digest": config_digest},
        "layers": [{"mediaType": im.DOCKER_LAYER, "size": layer.size, "digest": layer.digest} for layer in built],
    }
    manifest_bytes = json.dumps(manifest, indent=3).encode()
    blobs = {config_digest: config_bytes, **{layer.digest: layer.data for layer in built if layer.data is not None}}
    return im.Image(
        manifest=manifest_bytes, media_type=im.DOCKER_MANIFEST, digest=im.sha256_digest(manifest_bytes), config=config,
        config_bytes=config_bytes, config_digest=config_digest, layers=tuple(built), blobs=blobs, platform=plat,
    )


def golang_image(platform: str, seed: int) -> im.Image:
    return docker_image(
        platform,
        [("ADD debian bullseye rootfs", 3 * MiB), ("RUN apt-get install curl git ...", 2 * MiB),
         (f"RUN install go{GOLANG_TAG}", 4 * MiB), ("RUN mkdir -p /go/src /go/bin", 256)],
        seed=seed, env=[f"PATH={_GO_PATH}", f"GOLANG_VERSION={GOLANG_TAG}", "GOPATH=/go"], cmd=["bash"], workdir="/go",
    )


def tool_image(platform: str, seed: int) -> im.Image:
    return docker_image(platform, [("ADD alpine rootfs", 1 * MiB), ("COPY tool /usr/local/bin/", 512 * 1024)],
                        seed=seed, env=["PATH=/usr/local/bin:/usr/bin:/bin"], cmd=["tool"])


@dataclass
class Upstream:
    """Everything seeded, for the checks: indexes and images by tag."""

    golang: im.Index
    app: dict[str, im.Index]
    tool: dict[str, im.Image]
    key: CosignKey  # signed golang's index; its public half verifies the mirror

    def rows(self) -> list[tuple[str, str, str, list[str], str]]:
        """(repository:tag, media type, kind, platforms, digest) for the seeded table."""
        out = [(f"library/golang:{GOLANG_TAG}", self.golang.media_type, "manifest list, cosign-signed",
                self.golang.platforms, self.golang.digest)]
        for tag, index in self.app.items():
            out.append((f"team/app:{tag}", index.media_type, f"index + {len(index.attestations)} attestations",
                        index.platforms, index.digest))
        out.append(("team/app:latest", self.app[APP_TAGS[-1]].media_type, f"= v{APP_TAGS[-1][1:]}",
                    self.app[APP_TAGS[-1]].platforms, self.app[APP_TAGS[-1]].digest))
        for tag, image in self.tool.items():
            out.append((f"team/tool:{tag}", image.media_type, "single-arch image", [image.platform_string], image.digest))
        return out

    @property
    def total_bytes(self) -> int:
        seen: dict[str, int] = {}
        images = [*self.golang.children, *(c for i in self.app.values() for c in i.children), *self.tool.values()]
        for image in images:
            seen.update(image.blob_sizes)
        return sum(seen.values())


def seed_upstream(registry: Any) -> Upstream:
    """Build the images and push them straight to the upstream registry (not through the proxy)."""
    golang = im.build_index([golang_image("linux/amd64", 1), golang_image("linux/arm64/v8", 2)], oci=False)
    im.push_index(registry, "library/golang", golang, GOLANG_TAG)
    key = CosignKey.generate()
    sign(registry, "library/golang", golang.digest, key, docker_reference=f"docker.io/library/golang:{GOLANG_TAG}")
    app: dict[str, im.Index] = {}
    for n, tag in enumerate(APP_TAGS):
        index = im.build_index([im.build_image("linux/amd64", seed=100 + n, layer_size=192 * 1024),
                                im.build_image("linux/arm64/v8", seed=100 + n, layer_size=192 * 1024)], attestations=True)
        im.push_index(registry, "team/app", index, tag)
        app[tag] = index
    im.push_manifest(registry, "team/app", "latest", app[APP_TAGS[-1]].manifest, app[APP_TAGS[-1]].media_type)
    tool = {f"{TOOL_TAG}-amd64": tool_image("linux/amd64", 7), f"{TOOL_TAG}-arm64": tool_image("linux/arm64/v8", 8)}
    for tag, image in tool.items():
        im.push_image(registry, "team/tool", image, tag)
    return Upstream(golang, app, tool, key)


# ---------------------------------------------------------------------------- reading back


def normalise_platform(p: dict[str, Any]) -> tuple[str, str, str]:
    """(os, architecture, variant) with the defaults pullers apply (arm64 means arm64/v8)."""
    os_, arch, variant = p.get("os", ""), p.get("architecture", ""), p.get("variant", "")
    if arch == "arm64" and not variant:
        variant = "v8"
    return os_, arch, variant


def pull_choice(index: dict[str, Any], host: str) -> dict[str, Any] | None:
    """The descriptor a host of platform ``host`` (``linux/arm64/v8``) pulls from ``index``.

    As containerd and Docker choose: the first entry whose os and architecture match the host and
    whose variant matches (arm64's default variant is v8); attestation entries
    (``unknown/unknown``) are never runnable.
    """
    want = normalise_platform(im.parse_platform(host))
    for desc in index.get("manifests", []):
        plat = desc.get("platform")
        if not plat or plat.get("os") == "unknown":
            continue
        have = normalise_platform(plat)
        if have[:2] == want[:2] and (not want[2] or have[2] == want[2]):
            return desc
    return None


def platform_string(desc: dict[str, Any]) -> str:
    p = desc.get("platform") or {}
    parts = [p.get("os", "?"), p.get("architecture", "?")] + ([p["variant"]] if p.get("variant") else [])
    text = "/".join(parts)
    ref = (desc.get("annotations") or {}).get("vnd.docker.reference.digest")
    return f"{text} (attestation of {ref[:19]}…)" if ref else text
