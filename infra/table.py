"""The mirror table: what users write (one item per mirrored image) and the status the service writes back."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from .contract import lambda_rows

#: partition key of a mirror row (one item per image), as the Lambda package names it
PARTITION_KEY: str = lambda_rows.PARTITION_KEY


class MirrorTable(Construct):
    """On-demand, point-in-time recovery, encrypted, streaming new and changed rows; retained on stack deletion.

    The stream carries both images (``NEW_AND_OLD_IMAGES``) so the stream handler can tell a
    user's change of a row from the service's own status write to it, and enqueue only the former.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
