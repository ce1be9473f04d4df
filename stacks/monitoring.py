"""The monitoring stack: alarm topic, alarms with one paging composite, and the on-call dashboard."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from llm_hosting_constructs.alarms import AlarmThresholds, LlmAlarms
from llm_hosting_constructs.alerting import AlarmTopic
from llm_hosting_constructs.dashboard import OnCallDashboard
from llm_hosting_constructs.signals import ServiceSignals
from llmhost import outputs


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        signals: Callable[[Construct], ServiceSignals],
        alarm_emails: list[str],
        name_prefix: str,
        thresholds: AlarmThresholds,
        min_healthy_hosts: int,
        scales_to_zero: bool,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        # Built in this stack's scope: the other stacks' names are template parameters here (SSM, read at deploy).
        signals_here = signals(self)
        self.alarm_topic = AlarmTopic(self, "AlarmTopic", emails=alarm_emails, removal_policy=removal_policy)
        self.alarms = LlmAlarms(
            self,
            "Alarms",
            signals=signals_here,
            topic=self.alarm_topic.topic,
            name_prefix=name_prefix,
            thresholds=thresholds,
            min_healthy_hosts=min_healthy_hosts,
            scales_to_zero=scales_to_zero,
        )
        self.dashboard = OnCallDashboard(
            self,
            "Dashboard",
            dashboard_name=name_prefix,
            signals=signals_here,
            alarms=[self.alarms.composite, *self.alarms.alarms.values()],
        )
        CfnOutput(self, outputs.ALARM_TOPIC_ARN, value=self.alarm_topic.topic.topic_arn)
        CfnOutput(self, outputs.DASHBOARD_NAME, value=name_prefix)
