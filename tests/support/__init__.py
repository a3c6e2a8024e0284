"""Shared test support: real registry processes, a fault-injecting proxy, test images, moto.

Used by the integration tests, the benchmark and the demo. Nothing here imports the
product package (``ecr_mirror``): the tests must not check the product with itself.

Modules:

- :mod:`tests.support.registry` -- :class:`RegistryProcess`, a real ``docker-registry`` on loopback
- :mod:`tests.support.proxy` -- :class:`RegistryProxy`, a streaming reverse proxy that counts
  requests, can front the registry with bearer-token auth, and injects faults
- :mod:`tests.support.images` -- build real images/indexes in memory and push/read them with httpx
- :mod:`tests.support.moto` -- :class:`MotoServer`, ``moto_server`` on loopback, and :func:`boto3_env`
- :mod:`tests.support.ecr` -- :class:`EcrStandIn`, a faithful ECR (registry API with ECR's rules and
  the ECR JSON API over one store), and :class:`ReferrersProxy` (referrers API for upstream registries)
- :mod:`tests.support.referrers` -- OCI 1.1 artifacts (``artifactType``, ``subject``), the referrers tag
  schema (pushing and reading it), and :func:`list_referrers` as a client finds them
- :mod:`tests.support.cosign` -- sign as cosign does (``.sig``/``.att``/``.sbom`` tags, OCI 1.1 mode) and an
  independent verifier
- :mod:`tests.support.ratelimit` -- :class:`PullLimiter`, Docker Hub's pull limit as a proxy extension
- :mod:`tests.support.field` -- Windows images with foreign layers, ``os.version`` twins, nested indexes,
  indexes with artifact and unknown entries
- :mod:`tests.support.quirks` -- registry behaviours distribution 2.8 lacks (:class:`TagPager`), and how
  faults give the others (HEAD 404, missing Content-Length, Location, OCI-Subject)

(Import the last five modules directly; they are not re-exported here.)
"""

from .ecr import EcrStandIn, ReferrersProxy
from .images import (
    MANIFEST_ACCEPT,
    BearerAuth,
    Image,
    Index,
    Layer,
    RegistryError,
    blob_exists,
    build_attestation,
    build_image,
    build_index,
    delete_manifest,
    get_blob,
    get_manifest,
    head_manifest,
    list_tags,
    make_layer,
    push_blob,
    push_image,
    push_index,
    push_manifest,
)
from .moto import MotoServer, boto3_env
from .proxy import Fault, RegistryProxy
from .registry import RegistryProcess, find_free_port

__all__ = [
    "MANIFEST_ACCEPT",
    "BearerAuth",
    "EcrStandIn",
    "Fault",
    "Image",
    "Index",
    "Layer",
    "MotoServer",
    "ReferrersProxy",
    "RegistryError",
    "RegistryProcess",
    "RegistryProxy",
    "blob_exists",
    "boto3_env",
    "build_attestation",
    "build_image",
    "build_index",
    "delete_manifest",
    "find_free_port",
    "get_blob",
    "get_manifest",
    "head_manifest",
    "list_tags",
    "make_layer",
    "push_blob",
    "push_image",
    "push_index",
    "push_manifest",
]
