"""Where logs are kept: a CloudWatch Logs group encrypted with a customer-managed KMS key (created unless one
is given), and an S3 bucket that receives access logs."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .checkov import acknowledge_finding


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


def access_log_bucket(
    scope: Construct,
    id_: str,
    *,
    receives: str = "the ALB's access logs",
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    auto_delete_objects: bool = False,
) -> s3.Bucket:
    """A bucket in ``scope`` as ``id_`` that only receives access logs (``receives`` says whose, e.g. for
    ``InternalAlb(access_log_bucket=)``): SSE-S3 (ALB access logs support no KMS key: "Enable access logs
    for your Application Load Balancer",
    https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html), private,
    TLS-only, versioned, logs kept 365 days (old versions 30); not itself access-logged (acknowledged)."""
    bucket = s3.Bucket(
        scope,
        id_,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[
            s3.LifecycleRule(expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30))
        ],
        removal_policy=removal_policy,
        auto_delete_objects=auto_delete_objects,
    )
    reason = (
        f"This bucket only receives {receives}; logging access to it would need a "
        "second log bucket with the same question."
    )
    acknowledge_finding(bucket, reason, aws_solutions_rule="S1", checkov_check="CKV_AWS_18")
    return bucket
