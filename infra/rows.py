"""``MirrorRows``: the stack's rows file (context ``rowsFile``), applied to the mirror table at deploy.

::

    cdk synth: rowsFile (YAML) ──► validated (ecr_mirror.rowsfile) ──► JSON rows document, a property
    cdk deploy: custom resource ──► Provider framework ──► rows function (ecr_mirror.handlers.rows) ──► table

The rows function runs the code ``ecr-mirror apply -f`` runs (plan, then the writes). The rows travel as
a property of the custom resource, so a changed file is an Update and an unchanged one is no change.
What Create, Update and Delete do to the table (rows removed from the file are deleted; on Delete the
rows stay) is in :mod:`ecr_mirror.handlers.rows`.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from . import nag
from .config import EcrMirrorProps
from .contract import (
    HANDLER_ROWS,
    POWERTOOLS_LOG_LEVEL,
    POWERTOOLS_SERVICE_NAME,
    SERVICE_NAME,
    lambda_config,
    lambda_rowsfile,
)
from .service import LOG_RETENTION, mirror_function
from .table import MirrorTable

#: what the rows function does on the mirror table: read every row, write and delete rows
ROWS_TABLE_ACTIONS = ("dynamodb:Scan", "dynamodb:PutItem", "dynamodb:DeleteItem")
#: the CloudFormation type of the custom resource
RESOURCE_TYPE = "Custom::EcrMirrorRows"


class MirrorRows(Construct):
    """The rows function, the Provider framework in front of it, and the custom resource."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: EcrMirrorProps, table: MirrorTable, code: lambda_.Code
    ) -> None:
        super().__init__(scope, construct_id)
        document = props.rows_json
        assert document is not None and props.rows_file is not None
        self.function = mirror_function(
            self,
            "Apply",
            handler=HANDLER_ROWS,
            code=code,
            environment={
                lambda_config.ENV_TABLE: table.table.table_name,
                lambda_config.ENV_REPOSITORY_PREFIX: props.repository_prefix,
                lambda_config.ENV_LOG_LEVEL: props.log_level,
                POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
                POWERTOOLS_LOG_LEVEL: props.log_level,
            },
            memory_mb=256,
            timeout=cdk.Duration.minutes(5),
            description="ecr-mirror: apply the stack's rows file to the mirror table (cdk deploy)",
        )
        role = self.function.role
        assert role is not None
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(ROWS_TABLE_ACTIONS),
                                                         resources=[table.table.table_arn]))

        # the framework's function gets a role of our own (no managed policy) and a log group with retention
        provider_logs = logs.LogGroup(self, "ProviderLogs", retention=LOG_RETENTION)
        provider_role = iam.Role(self, "ProviderRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                                 description="ecr-mirror rows provider (CDK custom resource framework)")
        provider_logs.grant_write(provider_role)
        self.provider = cr.Provider(self, "Provider", on_event_handler=self.function,
                                    framework_on_event_role=provider_role, log_group=provider_logs)
        nag.acknowledge(
            provider_role,
            f"AwsSolutions-IAM5[Resource::{nag.finding_resource(self, self.function.function_arn)}:*]",
            "The CDK custom resource framework invokes the rows function by its ARN and any version or alias "
            "of it (lambda:InvokeFunction on <arn> and <arn>:*); no other function.",
        )
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=self.provider.service_token,
            resource_type=RESOURCE_TYPE,
            properties={lambda_rowsfile.PROPERTY_ROWS: document, lambda_rowsfile.PROPERTY_FILE_NAME: props.rows_file},
        )
