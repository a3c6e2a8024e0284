"""The mirror service: three functions, the work queue and its DLQ, the schedule, the stream trigger, IAM.

::

    EventBridge rule ──► schedule fn ──► work queue (a message per enabled row) ──► worker fn ──► ECR
    mirror table stream (filtered) ──► stream fn ──┘     └── DLQ after MAX_RECEIVE_COUNT receives
    schedule fn, worker fn, stream fn ──► state table (status, pass records; no stream)

Queue numbers, and why:

- batch size :data:`WORKER_BATCH_SIZE` (10) with a :data:`WORKER_BATCHING_WINDOW` of a few seconds: an
  unchanged row costs one HEAD per tag and nothing at ECR, so most rows take well under a second, and
  one invocation per 10 rows makes one pass-progress write per 10 rows (not one per row) and shares
  one ListImages per repository in an audit. A cold or huge row can still take the whole invocation:
  the time guard stops starting rows (and tags) when less than the reserve remains; a row not
  started is sent again as a fresh message (its receive count untouched), a row stopped midway is
  too when it made progress, otherwise it is handed back (visibility 0) and that receive counts.
- visibility timeout = min(6 x worker timeout, 12 h): AWS's guidance for SQS event sources is at
  least six times the function timeout (room for retries while Lambda throttles the poller);
  12 h is SQS's cap. At the default 900 s that is 5400 s.
- maxReceiveCount = :data:`MAX_RECEIVE_COUNT` (3): a row the worker hands back at its time limit
  (partial batch failure) resumes where it stopped (blobs already copied are skipped), so three
  receives cover two resumptions; a message that fails three times is parked in the DLQ, which alarms.
- event source maximum concurrency (context ``maxConcurrency``, default 5): at most that many
  workers at once, so the account's ECR API rates (PutImage 10/s) stay in reach; workers back off on 429.

Each function has its own role with only what it calls; nothing uses AWS managed policies.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import nag
from .bundling import ARCHITECTURE, RUNTIME, lambda_code
from .config import EcrMirrorProps
from .contract import (
    HANDLER_SCHEDULE,
    HANDLER_STREAM,
    HANDLER_WORKER,
    POWERTOOLS_LOG_LEVEL,
    POWERTOOLS_METRICS_NAMESPACE,
    POWERTOOLS_SERVICE_NAME,
    SERVICE_NAME,
    lambda_config,
    lambda_rows,
)
from .table import MirrorTable, StateTable

MAX_RECEIVE_COUNT = 3
WORKER_BATCH_SIZE = 10
#: how long Lambda gathers messages into one worker batch
WORKER_BATCHING_WINDOW = cdk.Duration.seconds(5)
DLQ_RETENTION = cdk.Duration.days(14)
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

#: what the worker may do on repositories under the prefix (and nothing else in ECR but the token)
ECR_REPOSITORY_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:DescribeImages",  # which digest each tag holds, 100 tags per call
    "ecr:ListImages",  # the audit: every image of a repository, 1,000 per page
    "ecr:DescribeRepositories",
    "ecr:CreateRepository",
    "ecr:TagResource",  # tags given to CreateRepository need it
)
#: the schedule function lists the rows (user attributes only)
SCHEDULE_TABLE_ACTIONS = ("dynamodb:Scan",)
#: ... finds the last audit pass and records this pass
SCHEDULE_STATE_ACTIONS = ("dynamodb:Query", "dynamodb:PutItem")
#: the worker reads one row; UpdateItem only removes a legacy status map from it (the migration)
WORKER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
#: ... reads a row's state (Query), writes statuses and progress (conditional PutItem), removes a row
#: status (DeleteItem) and statuses of tags no longer selected (BatchWriteItem), reads and updates the upstream
#: pull budgets (GetItem, conditional UpdateItem: issue 15)
WORKER_STATE_ACTIONS = ("dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                        "dynamodb:GetItem", "dynamodb:UpdateItem")
#: the stream function deletes the state of removed rows
STREAM_STATE_ACTIONS = ("dynamodb:Query", "dynamodb:BatchWriteItem")
#: ... and lists the rows (user attributes only) once per batch of user changes, to send each changed row
#: with the rows it may conflict with (issue 13)
STREAM_TABLE_ACTIONS = ("dynamodb:Scan",)
#: every function sends (SendMessageBatch is authorised as sqs:SendMessage; the worker re-sends rows it
#: could not start)
QUEUE_SEND_ACTIONS = ("sqs:SendMessage",)
#: GetAuthorizationToken has no resource-level form: it is granted on "*"
ECR_TOKEN_ACTION = "ecr:GetAuthorizationToken"
#: the stream function's event filter (Lambda event filtering): defined beside the rule it mirrors
#: (ecr_mirror.rows.is_enabled), see ecr_mirror.rows.STREAM_FILTERS
STREAM_FILTERS = lambda_rows.STREAM_FILTERS


class MirrorService(Construct):
    """Functions, queues, triggers and their permissions."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: EcrMirrorProps, table: MirrorTable, state_table: StateTable
    ) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        stack = cdk.Stack.of(self)
        mirror_table = table.table
        state = state_table.table

        # -- queues ------------------------------------------------------------------------
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            retention_period=DLQ_RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "WorkQueue",
            visibility_timeout=cdk.Duration.seconds(props.queue_visibility_timeout_seconds),
            retention_period=cdk.Duration.days(4),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue),
        )

        # -- upstream credentials ------------------------------------------------------------
        self.credentials_secret: secretsmanager.ISecret | None = None
        secret_arn: str | None = None
        secret_reference: str | None = None
        if props.create_credentials_secret:
            secret = secretsmanager.Secret(
                self,
                "UpstreamCredentials",
                description=(
                    "ecr-mirror upstream registry credentials: "
                    '{"<registry host>": {"username": "...", "password": "..."}}'
                ),
                # an empty JSON object: no credentials until the user fills them in
                secret_string_value=cdk.SecretValue.unsafe_plain_text("{}"),
                removal_policy=cdk.RemovalPolicy.RETAIN,
            )
            nag.acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "Holds tokens issued by upstream registries (Docker Hub, ghcr.io, quay.io); they can only be "
                "rotated at those registries, so there is no rotation Lambda to attach.",
            )
            self.credentials_secret = secret
            secret_arn = secret.secret_arn
            secret_reference = secret.secret_arn
        elif props.credentials_secret_name is not None:
            # Secrets Manager appends a random 6-character suffix to every secret's ARN
            secret_arn = stack.format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name=f"{props.credentials_secret_name}-??????",
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            )
            self.credentials_secret = secretsmanager.Secret.from_secret_name_v2(
                self, "UpstreamCredentials", props.credentials_secret_name
            )
            secret_reference = props.credentials_secret_name

        # -- functions -----------------------------------------------------------------------
        code = self.code = lambda_code()  # one asset, bundled once, shared by every function
        common_env = {
            lambda_config.ENV_TABLE: mirror_table.table_name,
            lambda_config.ENV_STATE_TABLE: state.table_name,
            lambda_config.ENV_REPOSITORY_PREFIX: props.repository_prefix,
            lambda_config.ENV_METRICS_NAMESPACE: props.metrics_namespace,
            lambda_config.ENV_LOG_LEVEL: props.log_level,
            lambda_config.ENV_QUEUE_URL: self.queue.queue_url,
            POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
            POWERTOOLS_METRICS_NAMESPACE: props.metrics_namespace,
            POWERTOOLS_LOG_LEVEL: props.log_level,
        }
        worker_env = {
            **common_env,
            lambda_config.ENV_TAG_MUTABILITY: props.tag_mutability,
            lambda_config.ENV_TIME_RESERVE_SECONDS: str(props.worker_time_reserve_seconds),
            lambda_config.ENV_PULL_RESERVE: props.pull_reserve,
        }
        if props.host_rates:
            worker_env[lambda_config.ENV_HOST_RATES] = props.host_rates
        if secret_reference is not None:
            worker_env[lambda_config.ENV_CREDENTIALS_SECRET] = secret_reference
        if props.target_registry is not None:
            worker_env[lambda_config.ENV_TARGET_REGISTRY] = props.target_registry

        schedule_env = {**common_env, lambda_config.ENV_AUDIT_INTERVAL_SECONDS: str(props.audit_interval_seconds)}
        self.schedule_function = self._function(
            "Schedule",
            handler=HANDLER_SCHEDULE,
            code=code,
            environment=schedule_env,
            memory_mb=256,
            timeout=cdk.Duration.minutes(5),
            description="ecr-mirror: on schedule, enqueue one message per enabled mirror row",
        )
        self.worker_function = self._function(
            "Worker",
            handler=HANDLER_WORKER,
            code=code,
            environment=worker_env,
            memory_mb=props.worker_memory_mb,
            timeout=cdk.Duration.seconds(props.worker_timeout_seconds),
            description="ecr-mirror: sync one mirror row (upstream -> ECR) and record its status",
        )
        self.stream_function = self._function(
            "Stream",
            handler=HANDLER_STREAM,
            code=code,
            environment=common_env,
            memory_mb=256,
            timeout=cdk.Duration.minutes(1),
            description="ecr-mirror: enqueue mirror rows that users add or change",
        )
        self.functions = (self.schedule_function, self.worker_function, self.stream_function)

        # -- triggers ------------------------------------------------------------------------
        self.schedule_rule = events.Rule(
            self,
            "ScheduleRule",
            description="ecr-mirror: full sync of every enabled row",
            schedule=events.Schedule.expression(props.schedule_expression),
            targets=[
                targets.LambdaFunction(
                    self.schedule_function, retry_attempts=2, max_event_age=cdk.Duration.hours(1)
                )
            ],
        )
        self.worker_function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=WORKER_BATCH_SIZE,
                max_batching_window=WORKER_BATCHING_WINDOW,
                max_concurrency=props.max_concurrency,
                report_batch_item_failures=True,
            )
        )
        # The stream is an accelerator (a new row syncs within a minute); the schedule is the source of
        # truth, so stream records that still fail after the retries are left to the next scheduled sync.
        # The stream handler fails or succeeds as a whole (it only enqueues), so a failing batch is
        # bisected to isolate a bad record rather than reported item by item. Only records worth a look
        # invoke it (STREAM_FILTERS): a row added or changed and not disabled, or a row removed.
        self.stream_function.add_event_source(
            sources.DynamoEventSource(
                mirror_table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=100,
                max_batching_window=cdk.Duration.seconds(1),
                retry_attempts=3,
                bisect_batch_on_error=True,
                max_record_age=cdk.Duration.hours(1),
                filters=[lambda_.FilterCriteria.filter(pattern) for pattern in STREAM_FILTERS],
            )
        )

        # -- permissions ---------------------------------------------------------------------
        table_arn = mirror_table.table_arn
        state_arn = state.table_arn
        self._role("schedule_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(SCHEDULE_TABLE_ACTIONS), resources=[table_arn])
        )
        self._role("schedule_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(SCHEDULE_STATE_ACTIONS), resources=[state_arn])
        )
        self._role("schedule_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(QUEUE_SEND_ACTIONS), resources=[self.queue.queue_arn])
        )

        # (stream reading is granted by the DynamoDB event source, on the stream ARN; the stream function
        # scans the mirror table's user attributes for the conflict peers of the rows users changed)
        self._role("stream_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(STREAM_TABLE_ACTIONS), resources=[table_arn])
        )
        self._role("stream_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(QUEUE_SEND_ACTIONS), resources=[self.queue.queue_arn])
        )
        self._role("stream_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(STREAM_STATE_ACTIONS), resources=[state_arn])
        )
        stream_role = self.stream_function.role
        assert stream_role is not None
        nag.acknowledge(
            stream_role,
            "AwsSolutions-IAM5[Resource::*]",
            "dynamodb:ListStreams, granted by CDK's DynamoEventSource for Lambda's event source mapping, "
            "is the only action on '*': it lists stream ARNs, no data; reading records is limited to "
            "this table's stream ARN.",
        )

        # (queue consumption is granted by the SQS event source)
        self._role("worker_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(WORKER_TABLE_ACTIONS), resources=[table_arn])
        )
        self._role("worker_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(WORKER_STATE_ACTIONS), resources=[state_arn])
        )
        self._role("worker_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(QUEUE_SEND_ACTIONS), resources=[self.queue.queue_arn])
        )
        if secret_arn is not None:
            self._role("worker_function").add_to_principal_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret_arn])
            )
        self.ecr_repository_arn = self._ecr_repository_arn()
        self._role("worker_function").add_to_principal_policy(
            iam.PolicyStatement(actions=[ECR_TOKEN_ACTION], resources=["*"])
        )
        self._role("worker_function").add_to_principal_policy(
            iam.PolicyStatement(actions=list(ECR_REPOSITORY_ACTIONS), resources=[self.ecr_repository_arn])
        )
        worker_role = self.worker_function.role
        assert worker_role is not None
        nag.acknowledge(
            worker_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken is the only action on '*': it has no resource-level form "
            "(the ECR registry login token); every other ECR action is scoped to the prefix.",
        )
        nag.acknowledge(
            worker_role,
            f"AwsSolutions-IAM5[Resource::{nag.finding_resource(self, self.ecr_repository_arn)}]",
            f"The mirror creates and pushes one repository per upstream image, named "
            f"'{props.repository_prefix}/<source path>' as rows are added; the wildcard is confined to "
            f"the '{props.repository_prefix}/' prefix of one account and region.",
        )

    # ------------------------------------------------------------------------------------------

    def _function(self, name: str, **options: Any) -> lambda_.Function:
        return mirror_function(self, name, **options)

    def _role(self, attribute: str) -> iam.IRole:
        """The function's own role; statements go to its default policy, where the acknowledgements apply."""
        role = getattr(self, attribute).role
        assert role is not None
        return role

    def _ecr_repository_arn(self) -> str:
        stack = cdk.Stack.of(self)
        account_region = self.props.target_account_and_region
        account, region = account_region if account_region else (stack.account, stack.region)
        return stack.format_arn(
            service="ecr",
            resource="repository",
            resource_name=f"{self.props.repository_prefix}/*",
            account=account,
            region=region,
        )


def mirror_function(
    scope: Construct,
    name: str,
    *,
    handler: str,
    code: lambda_.Code,
    environment: dict[str, str],
    memory_mb: int,
    timeout: cdk.Duration,
    description: str,
) -> lambda_.Function:
    """One of the mirror's functions (runtime, architecture as :mod:`infra.bundling` says), with its own log
    group (:data:`LOG_RETENTION`) and its own role, allowed only to write its logs: grant it what it calls."""
    log_group = logs.LogGroup(scope, f"{name}Logs", retention=LOG_RETENTION)
    role = iam.Role(
        scope,
        f"{name}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"ecr-mirror {name.lower()} function",
    )
    log_group.grant_write(role)
    return lambda_.Function(
        scope,
        name,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=handler,
        code=code,
        environment=environment,
        memory_size=memory_mb,
        timeout=timeout,
        role=role,
        log_group=log_group,
        description=description,
    )
