"""Where alarms go: an SNS topic encrypted with a customer-managed KMS key, with e-mail subscriptions."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct


class AlarmTopic(Construct):
    """SNS topic for alarm notifications.

    Safe defaults: encrypted with a rotating customer-managed key whose policy lets CloudWatch
    (alarms) use it and nothing else outside the account; publishing only over TLS. Each of
    `emails` gets a subscription (the recipient confirms it once). Bring your own key with
    `existing_key`.

    Attributes: `topic`, `key`.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        emails: Sequence[str] = (),
        existing_key: kms.IKey | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if len(set(emails)) != len(emails):
            raise ValueError("AlarmTopic: emails lists an address twice")
        if existing_key is None:
            key = kms.Key(
                self,
                "Key",
                description="Encrypts the alarm notification topic",
                enable_key_rotation=True,
                removal_policy=removal_policy,
            )
            # CloudWatch publishes alarm state changes to the encrypted topic on its own behalf.
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="AllowCloudWatchAlarms",
                    principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                )
            )
            existing_key = key
        self.key = existing_key
        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True)
        for email in emails:
            self.topic.add_subscription(subs.EmailSubscription(email))
