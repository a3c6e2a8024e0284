"""A faithful ECR stand-in for tests: a real ``docker-registry`` behind ECR's rules, plus ECR's JSON API.

    with EcrStandIn() as ecr:                      # or the ``ecr`` pytest fixture
        ecr.client().create_repository(repositoryName="team/app")
        push_index(ecr.url, "team/app", index, tag="v1", auth=ecr.auth)
        ecr.client().describe_images(repositoryName="team/app")

Modules:

- :mod:`.model` -- images, repositories and ECR's rules over them (no HTTP)
- :mod:`.store` -- :class:`Account`: the one store both faces share (records beside distribution's bytes)
- :mod:`.registry_face` -- the registry API face (:class:`RegistryFront`) and :class:`ReferrersProxy`
  (referrers API only, for upstream registries)
- :mod:`.bucket` -- the S3-like :class:`LayerBucket` blob GETs redirect to
- :mod:`.operations`, :mod:`.api_face` -- the ECR API (JSON 1.1) face
- :mod:`.standin` -- :class:`EcrStandIn`, which starts and wires them

Its own tests (``tests/integration/test_ecr_standin*.py``) pin each rule to its source.

Not modelled: IAM (identity policies, repository and registry policies: every signed request is
allowed), KMS (the encryption configuration is stored and compared for mounts, nothing is encrypted),
replication, image scanning (``scanOnPush`` is stored; no findings, no ``imageScanStatus``),
pull-through cache rules, repository-creation templates (no create-on-push), lifecycle policies
(``EcrStandIn.lifecycle_expire`` plays their effect on demand), the deletion of referrers after their
subject, archive storage class, managed signing, ``lastRecordedPullTime``, ECR Public, other accounts
and regions (one registry; cross-account ``registryId`` answers RepositoryNotFoundException), the
native layer API (InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload, PutImage,
BatchCheckLayerAvailability, GetDownloadUrlForLayer, ListImageReferrers as API calls), API
throttling other than injected faults (``add_api_fault``), manifest conversion for a client whose
Accept lacks the stored type (distribution's own behaviour answers), the upload-status GET 404 seen
on ECR Public, the ``405`` on referrers whose subject is an index (aws/containers-roadmap#2783),
TLS (plain http on loopback), and the real hostnames (``*.dkr.ecr.<region>.amazonaws.com``).
"""

from .api_face import ApiCall, ApiFault
from .model import ACCOUNT, MANIFEST_LIMIT, PART_MINIMUM, REGION, EcrError, Image, Repository
from .registry_face import ReferrersProxy, ecr_action
from .standin import EcrStandIn

__all__ = [
    "ACCOUNT",
    "MANIFEST_LIMIT",
    "PART_MINIMUM",
    "REGION",
    "ApiCall",
    "ApiFault",
    "EcrError",
    "EcrStandIn",
    "Image",
    "ReferrersProxy",
    "Repository",
    "ecr_action",
]
