"""The monitoring stack: alarm topic, alarms with one paging composite, and the on-call dashboard."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from llm_hosting_constructs.alarms import AlarmThresholds, LlmAlarms
from llm_hosting_constructs.alerting import AlarmTopic
from llm_hosting_constructs.dashboard import OnCallDashboard
from llm_hosting_constructs.signals import ServiceSignals
from llmhost import outputs
from stacks import derived


@dataclass(frozen=True)
class MonitoringSettings:
    """Everything app.py derives from the config for this stack (``monitoring:``, and the ECS
    capacity the alarms expect). ``name_prefix`` names the alarms and the dashboard."""

    alarm_emails: Sequence[str]
    name_prefix: str = derived("llm-hosting-<env>")
    thresholds: AlarmThresholds
    min_healthy_hosts: int = derived("ecs.min_capacity (0 without the ECS backend)")
    scales_to_zero: bool = derived("ecs.off_hours is set")


class MonitoringStack(Stack):
    """Composes `AlarmTopic`, `LlmAlarms` and `OnCallDashboard` over ``signals`` (built in this stack's scope)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        signals: Callable[[Construct], ServiceSignals],
        settings: MonitoringSettings,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        s = settings
        # Built in this stack's scope: the other stacks' names are template parameters here (SSM, read at deploy).
        signals_here = signals(self)
        self.alarm_topic = AlarmTopic(self, "AlarmTopic", emails=list(s.alarm_emails), removal_policy=removal_policy)
        self.alarms = LlmAlarms(
            self,
            "Alarms",
            signals=signals_here,
            topic=self.alarm_topic.topic,
            name_prefix=s.name_prefix,
            thresholds=s.thresholds,
            min_healthy_hosts=s.min_healthy_hosts,
            scales_to_zero=s.scales_to_zero,
        )
        self.dashboard = OnCallDashboard(
            self,
            "Dashboard",
            dashboard_name=s.name_prefix,
            signals=signals_here,
            alarms=[self.alarms.composite, *self.alarms.alarms.values()],
        )
        CfnOutput(self, outputs.ALARM_TOPIC_ARN, value=self.alarm_topic.topic.topic_arn)
        CfnOutput(self, outputs.DASHBOARD_NAME, value=s.name_prefix)
