"""The stateful half of serving: the EFS model cache, its KMS key, the serving secrets and the ALB log bucket.

Kept apart from the serving stack so that the serving stack can be destroyed and recreated
freely: nothing here is lost with it, and in prod nothing here is deleted at all.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnOutput, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from llm_hosting_constructs.checkov import skip_checkov
from llm_hosting_constructs.model_cache import ModelCache
from llm_hosting_constructs.serving_secrets import ServingSecrets
from llmhost import outputs

THROUGHPUT = {"elastic": efs.ThroughputMode.ELASTIC, "bursting": efs.ThroughputMode.BURSTING}


class ModelCacheStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        throughput_mode: str,
        automatic_backups: bool,
        hf_token_secret_name: str | None,
        api_key_id: str,
        alb_access_logs: bool,
        removal_policy: RemovalPolicy,
        security_group_parameter_name: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.model_cache = ModelCache(
            self,
            "ModelCache",
            vpc=vpc,
            subnets=subnets,
            throughput_mode=THROUGHPUT[throughput_mode],
            automatic_backups=automatic_backups,
            removal_policy=removal_policy,
            security_group_parameter_name=security_group_parameter_name,
        )
        self.key = self.model_cache.key
        # The serving and pre-warm log groups are encrypted with this key too.
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com"))
        self.secrets = ServingSecrets(
            self,
            "Secrets",
            key=self.key,
            existing_hf_token_secret_name=hf_token_secret_name,
            generated_key_id=api_key_id,
            removal_policy=removal_policy,
        )

        self.access_log_bucket: s3.Bucket | None = None
        if alb_access_logs:
            # ALB access logs support SSE-S3 only (no KMS key); the bucket is private, TLS-only, versioned.
            self.access_log_bucket = s3.Bucket(
                self,
                "AlbAccessLogs",
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                versioned=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                lifecycle_rules=[
                    s3.LifecycleRule(expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30))
                ],
                removal_policy=removal_policy,
            )
            log_of_logs = (
                "This bucket only receives the ALB's access logs; logging access to it would need a "
                "second log bucket with the same question."
            )
            Validations.of(self.access_log_bucket).acknowledge(
                Acknowledgment(id="AwsSolutions::AwsSolutions-S1", reason=log_of_logs)
            )
            skip_checkov(self.access_log_bucket, "CKV_AWS_18", log_of_logs)

        CfnOutput(
            self,
            outputs.MODEL_CACHE_FILE_SYSTEM_ID,
            value=self.model_cache.file_system.file_system_id,
            description="EFS file system holding the Hugging Face cache (HF_HOME)",
        )
