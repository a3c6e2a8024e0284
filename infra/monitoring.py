"""Monitoring: alarms to an SNS topic (optional e-mail), and a dashboard of the sync metrics.

The service's metrics are CloudWatch EMF lines written by Powertools for AWS Lambda: namespace
from ``ECR_MIRROR_METRICS_NAMESPACE`` (= ``POWERTOOLS_METRICS_NAMESPACE``), one dimension
``service`` = ``ecr-mirror`` (Powertools' default dimension, from ``POWERTOOLS_SERVICE_NAME``).
Metric names are imported from ``ecr_mirror.metrics``.

======================= ================================================= ===============================
alarm                   condition                                         missing data
======================= ================================================= ===============================
``Drift``               TagsDrifted sum >= 1 in an hour                   not breaching
``SyncFailures``        TagsFailed sum >= 1 in an hour                    not breaching
``InvalidRows``         RowsInvalid sum >= 1 in an hour                   not breaching
``RowsMatchedNothing``  RowsMatchedNothing sum >= 1 in an hour            not breaching
``RowConflicts``        TagsInConflict sum >= 1 in an hour                not breaching
``DeadLetters``         DLQ ApproximateNumberOfMessagesVisible >= 1       not breaching
``<Fn>Errors``          Lambda Errors >= 1 in 5 minutes (each function)   not breaching
``WorkerThrottles``     worker Lambda Throttles >= 1 in 5 minutes         not breaching
``NoSuccessfulSync``    SyncSucceeded sum < 1 for two schedule periods    BREACHING (silence is the fault)
======================= ================================================= ===============================
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from .config import EcrMirrorProps
from .contract import METRIC_DIMENSIONS, SERVICE_NAME, lambda_metrics
from .service import MirrorService

HOUR = cdk.Duration.hours(1)
FIVE_MINUTES = cdk.Duration.minutes(5)


class MirrorMonitoring(Construct):
    """Alarm topic, alarms and dashboard for one mirror service."""

    def __init__(self, scope: Construct, construct_id: str, *, props: EcrMirrorProps, service: MirrorService) -> None:
        super().__init__(scope, construct_id)
        self.props = props

        # -- topic ---------------------------------------------------------------------------
        # CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed aws/sns key:
        # the topic gets a customer-managed key whose policy lets CloudWatch use it.
        self.topic_key = kms.Key(
            self,
            "AlarmTopicKey",
            description="ecr-mirror alarm topic encryption",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        self.topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="ecr-mirror alarms",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
        if props.alarm_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.alarm_email))
        action = cw_actions.SnsAction(self.topic)

        # -- alarms --------------------------------------------------------------------------
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        at_least = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD

        def alarm(
            name: str,
            metric: cloudwatch.IMetric,
            description: str,
            *,
            threshold: float = 1,
            evaluation_periods: int = 1,
            comparison: cloudwatch.ComparisonOperator = at_least,
            missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
        ) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                name,
                metric=metric,
                alarm_description=f"ecr-mirror: {description}",
                threshold=threshold,
                evaluation_periods=evaluation_periods,
                datapoints_to_alarm=evaluation_periods,
                comparison_operator=comparison,
                treat_missing_data=missing,
            )
            created.add_alarm_action(action)
            self.alarms[name] = created
            return created

        alarm(
            "Drift",
            self.service_metric(lambda_metrics.TAGS_DRIFTED),
            "a mirrored tag drifted from its source (diverged or broken in ECR); it is repaired on the "
            "next sync where mutability allows; see `ecr-mirror status`",
        )
        alarm(
            "SyncFailures",
            self.service_metric(lambda_metrics.TAGS_FAILED),
            "tags failed to sync; see `ecr-mirror status` and the worker's logs",
        )
        alarm(
            "InvalidRows",
            self.service_metric(lambda_metrics.ROWS_INVALID),
            "mirror table rows do not validate and are skipped; the status names the attribute",
        )
        alarm(
            "RowsMatchedNothing",
            self.service_metric(lambda_metrics.ROWS_MATCHED_NOTHING),
            "mirror table rows select tags by pattern or version range and matched no upstream tag, so they "
            "mirror nothing; `ecr-mirror status` shows the selection and how many upstream tags it was tried on",
        )
        alarm(
            "RowConflicts",
            self.service_metric(lambda_metrics.TAGS_IN_CONFLICT),
            "two mirror table rows select the same target repository and tag (state `conflict`, naming the "
            "other row); neither writes it until one of them stops selecting it",
        )
        alarm(
            "DeadLetters",
            service.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            "work messages failed repeatedly and were parked in the dead-letter queue",
        )
        for name, function in (
            ("Schedule", service.schedule_function),
            ("Worker", service.worker_function),
            ("Stream", service.stream_function),
        ):
            alarm(
                f"{name}Errors",
                function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                f"the {name.lower()} function failed invocations",
            )
        alarm(
            "WorkerThrottles",
            service.worker_function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
            "worker invocations were throttled (account concurrency exhausted)",
        )
        stale_period, stale_evaluations = props.stale_alarm_window
        alarm(
            "NoSuccessfulSync",
            self.service_metric(lambda_metrics.SYNC_SUCCEEDED, period=cdk.Duration.seconds(stale_period)),
            f"no row synced successfully for two schedule periods ({props.schedule_expression})",
            evaluation_periods=stale_evaluations,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cloudwatch.TreatMissingData.BREACHING,
        )

        alarm(
            "LongDeferral",
            self.service_metric(lambda_metrics.OLDEST_DEFERRAL_SECONDS, statistic="Maximum", period=FIVE_MINUTES),
            f"a row has waited for upstream pulls (deferred: the upstream's pull budget is spent) for more than two "
            f"schedule periods ({props.schedule_expression}); see `ecr-mirror status` for the reason and refill time",
            threshold=2 * props.schedule_period_seconds,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )

        # -- dashboard -----------------------------------------------------------------------
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=cdk.Duration.days(7))
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    "# ecr-mirror\nTags in sync, drifted and failed per hour; bytes copied; the upstream "
                    f"rate limit left. Schedule: `{props.schedule_expression}`, repositories "
                    f"`{props.repository_prefix}/...`."
                ),
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Tags: in sync / drifted / failed",
                left=[
                    self.service_metric(lambda_metrics.TAGS_IN_SYNC, label="in sync"),
                    self.service_metric(lambda_metrics.TAGS_DRIFTED, label="drifted"),
                    self.service_metric(lambda_metrics.TAGS_FAILED, label="failed"),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Tags: behind / missing / copied / in conflict",
                left=[
                    self.service_metric(lambda_metrics.TAGS_BEHIND, label="behind"),
                    self.service_metric(lambda_metrics.TAGS_MISSING, label="missing"),
                    self.service_metric(lambda_metrics.TAGS_COPIED, label="copied"),
                    self.service_metric(lambda_metrics.TAGS_IN_CONFLICT, label="in conflict"),
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Bytes copied",
                left=[self.service_metric(lambda_metrics.BYTES_COPIED, label="bytes")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Upstream rate limit remaining (lowest)",
                left=[
                    self.service_metric(
                        lambda_metrics.UPSTREAM_RATELIMIT_REMAINING, statistic="Minimum", label="remaining"
                    )
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Rows: synced / invalid / matched nothing / enqueued",
                left=[
                    self.service_metric(lambda_metrics.SYNC_SUCCEEDED, label="synced"),
                    self.service_metric(lambda_metrics.ROWS_INVALID, label="invalid"),
                    self.service_metric(lambda_metrics.ROWS_MATCHED_NOTHING, label="matched nothing"),
                    self.service_metric(lambda_metrics.ROWS_ENQUEUED, label="enqueued"),
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queues",
                left=[
                    service.queue.metric_approximate_number_of_messages_visible(label="work: waiting"),
                    service.queue.metric_approximate_number_of_messages_not_visible(label="work: in flight"),
                    service.dead_letter_queue.metric_approximate_number_of_messages_visible(label="dead letters"),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Worker",
                left=[
                    service.worker_function.metric_invocations(label="invocations"),
                    service.worker_function.metric_errors(label="errors"),
                    service.worker_function.metric_throttles(label="throttles"),
                ],
                right=[service.worker_function.metric_duration(statistic="Maximum", label="max duration")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Upstream pull budget, per registry: remaining (lowest) / spent / tags deferred",
                left=[self.registry_metrics(lambda_metrics.PULLS_REMAINING, "Minimum", "remaining")],
                right=[self.registry_metrics(lambda_metrics.PULLS_SPENT, "Sum", "spent"),
                       self.registry_metrics(lambda_metrics.TAGS_DEFERRED, "Sum", "deferred")],
                width=16,
            ),
            cloudwatch.GraphWidget(
                title="Oldest deferral (seconds)",
                left=[self.service_metric(lambda_metrics.OLDEST_DEFERRAL_SECONDS, statistic="Maximum", label="waited")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(alarms=list(self.alarms.values()), title="Alarms", width=24)
        )

    def service_metric(
        self,
        name: str,
        *,
        statistic: str = "Sum",
        period: cdk.Duration = HOUR,
        label: str | None = None,
    ) -> cloudwatch.Metric:
        """One of the service's EMF metrics, with the Powertools ``service`` dimension."""
        if name not in lambda_metrics.ALL_METRICS:
            raise ValueError(f"{name!r} is not a metric the Lambda package emits (ecr_mirror.metrics.ALL_METRICS)")
        return cloudwatch.Metric(
            namespace=self.props.metrics_namespace,
            metric_name=name,
            dimensions_map=dict(METRIC_DIMENSIONS),
            statistic=statistic,
            period=period,
            label=label,
        )

    def registry_metrics(self, name: str, statistic: str, label: str) -> cloudwatch.MathExpression:
        """Every upstream registry's series of a per-registry metric (dimensions ``Registry`` and ``service``):
        a CloudWatch ``SEARCH`` expression, since the registries are known only once the service has seen them."""
        if name not in lambda_metrics.REGISTRY_METRICS:
            raise ValueError(f"{name!r} is not a per-registry metric (ecr_mirror.metrics.REGISTRY_METRICS)")
        dimension = lambda_metrics.REGISTRY_DIMENSION
        return cloudwatch.MathExpression(
            expression=(f"SEARCH('{{{self.props.metrics_namespace},{dimension},service}} MetricName=\"{name}\" "
                        f"service=\"{SERVICE_NAME}\"', '{statistic}', 3600)"),
            label=label,
            period=HOUR,
        )

    @property
    def dashboard_url(self) -> str:
        region = cdk.Aws.REGION
        return (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards:name={self.dashboard.dashboard_name}"
        )
