"""The two tables: the mirror table (what users write, one item per mirrored image) and the state table
(what the service records: per-tag status, row status, pass records). Why two: README "The data model"."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from .contract import lambda_rows, lambda_status

#: partition key of a mirror row (one item per image), as the Lambda package names it
PARTITION_KEY: str = lambda_rows.PARTITION_KEY
#: the state table's keys and TTL attribute, as the Lambda package names them
STATE_PARTITION_KEY: str = lambda_status.KEY_PK
STATE_SORT_KEY: str = lambda_status.KEY_SK
STATE_TTL_ATTRIBUTE: str = lambda_status.TTL_ATTRIBUTE


def _kept() -> dict[str, object]:
    """What both tables share: on demand, point-in-time recovery, AWS-managed encryption, kept when the stack goes."""
    return {
        "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
        "point_in_time_recovery_specification": dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        "encryption": dynamodb.TableEncryption.AWS_MANAGED,
        "removal_policy": cdk.RemovalPolicy.RETAIN,
    }


class MirrorTable(Construct):
    """On-demand, point-in-time recovery, encrypted, streaming new and changed rows; retained on stack deletion.

    Only users write it (the service records into the :class:`StateTable`). The stream carries both
    images (``NEW_AND_OLD_IMAGES``) so the stream handler can tell a user's change of a row from the
    one-time migration that removes a legacy status map from it, and enqueue only the former.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            **_kept(),
        )


class StateTable(Construct):
    """What the service records: on-demand, point-in-time recovery, encrypted, retained; partition key
    ``pk`` and sort key ``sk`` (item kinds: :mod:`ecr_mirror.status`); TTL on ``expires_at`` (pass records
    go after 30 days). No stream: no write of the service can invoke anything.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=STATE_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=STATE_SORT_KEY, type=dynamodb.AttributeType.STRING),
            time_to_live_attribute=STATE_TTL_ATTRIBUTE,
            **_kept(),
        )
