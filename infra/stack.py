"""``EcrMirrorStack``: the deployable stack (what ``app.py`` builds), with its outputs."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from .config import EcrMirrorProps
from .contract import lambda_config
from .mirror import EcrMirror

DEFAULT_STACK_NAME = "EcrMirror"


class EcrMirrorStack(cdk.Stack):
    """One :class:`EcrMirror` and the outputs a user needs: table, queue, dashboard, topic (and secret)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: EcrMirrorProps, **stack_options: Any) -> None:
        stack_options.setdefault(
            "description", "ecr-mirror: keeps multi-architecture container images mirrored into Amazon ECR"
        )
        super().__init__(scope, construct_id, **stack_options)
        self.mirror = EcrMirror(self, "Mirror", props=props)
        service = self.mirror.service

        # what `ecr-mirror --stack NAME` reads (ecr_mirror.config.STACK_OUTPUTS): the values the functions get
        settings = {
            "TableName": (self.mirror.table.table.table_name,
                          "Mirror table: add one row per image (ecr-mirror add / aws dynamodb put-item)"),
            "StateTableName": (self.mirror.state_table.table.table_name,
                               "State table: what the service records (ECR_MIRROR_STATE_TABLE for the CLI)"),
            "RepositoryPrefix": (props.repository_prefix, "ECR repositories the service creates: <prefix>/<source>"),
            "TagMutability": (props.tag_mutability, "Tag mutability of the repositories the service creates"),
            "TargetRegistry": (props.target_registry or f"{self.account}.dkr.ecr.{self.region}.{self.url_suffix}",
                               "ECR registry the mirrors are written to"),
        }
        assert set(settings) == set(lambda_config.STACK_OUTPUTS), "every output the CLI's --stack reads"
        for key, (value, description) in settings.items():
            cdk.CfnOutput(self, key, value=value, description=description)
        cdk.CfnOutput(self, lambda_config.OUTPUT_REGION, value=self.region,
                      description="Region of the tables and the functions (ecr-mirror --stack uses it)")
        cdk.CfnOutput(self, "QueueUrl", value=service.queue.queue_url,
                      description="Work queue: one message per row to sync")
        cdk.CfnOutput(self, "DashboardUrl", value=self.mirror.dashboard_url,
                      description="CloudWatch dashboard of the sync metrics")
        cdk.CfnOutput(self, "TopicArn", value=self.mirror.monitoring.topic.topic_arn,
                      description="SNS topic the alarms publish to")
        if service.credentials_secret is not None and props.create_credentials_secret:
            cdk.CfnOutput(self, "CredentialsSecretArn", value=service.credentials_secret.secret_arn,
                          description='Fill with {"<registry host>": {"username": "...", "password": "..."}}')
