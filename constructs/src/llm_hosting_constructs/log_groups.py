"""A CloudWatch Logs group encrypted with a customer-managed KMS key (created unless one is given)."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def encrypted_log_group(
    scope: Construct,
    group_id: str,
    *,
    retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    key: kms.IKey | None = None,
    key_id: str = "LogKey",
    key_description: str = "Encrypts a log group",
    log_group_name: str | None = None,
    key_scope: str | None = None,
) -> tuple[kms.IKey, logs.LogGroup]:
    """(key, log group) in `scope` under the ids `key_id` and `group_id`.

    A created key rotates and lets only CloudWatch Logs of this region use it, and only for log
    groups of this account and region (`log_group_name`'s alone when the name is known; `key_scope`,
    a log group name with wildcards, widens that to the groups the key must keep decrypting).
    """
    if key is None:
        stack = Stack.of(scope)
        created = kms.Key(
            scope, key_id, description=key_description, enable_key_rotation=True, removal_policy=removal_policy
        )
        created.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccountAndRegion",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name=key_scope or log_group_name or "*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        key = created
    group = logs.LogGroup(
        scope,
        group_id,
        log_group_name=log_group_name,
        retention=retention,
        encryption_key=key,
        removal_policy=removal_policy,
    )
    return key, group
