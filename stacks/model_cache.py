"""The stateful half of serving: the EFS model cache, its KMS key, the serving secrets and the ALB log bucket.

Kept apart from the serving stack so that the serving stack can be destroyed and recreated
freely: nothing here is lost with it, and in prod nothing here is deleted at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from llm_hosting_constructs.log_groups import access_log_bucket
from llm_hosting_constructs.model_cache import ModelCache
from llm_hosting_constructs.serving_secrets import ServingSecrets
from llmhost import outputs
from stacks import derived
from stacks.network import NetworkStack

THROUGHPUT = {"elastic": efs.ThroughputMode.ELASTIC, "bursting": efs.ThroughputMode.BURSTING}


@dataclass(frozen=True)
class ModelCacheSettings:
    """Everything app.py derives from the config for this stack (``ecs:`` and ``retain_stateful``)."""

    efs_throughput_mode: Literal["elastic", "bursting"]
    automatic_backups: bool = derived("retain_stateful: prod-like environments back the cache up")
    hf_token_secret_name: str | None
    generated_key_id: str = derived("the front door's key id in the gateway's keys secret (app.py FRONTDOOR_KEY_ID)")
    alb_access_logs: bool
    security_group_parameter_name: str = derived("SSM parameter the serving stack reads the cache's group from")


class ModelCacheStack(Stack):
    """Composes `ModelCache`, `ServingSecrets` and the ALB's `access_log_bucket` (stateful: retained in prod)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        network: NetworkStack,
        settings: ModelCacheSettings,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        s = settings
        self.model_cache = ModelCache(
            self,
            "ModelCache",
            vpc=network.vpc,
            subnets=network.workload_subnets,
            throughput_mode=THROUGHPUT[s.efs_throughput_mode],
            automatic_backups=s.automatic_backups,
            removal_policy=removal_policy,
            security_group_parameter_name=s.security_group_parameter_name,
        )
        self.key = self.model_cache.key
        # The serving and pre-warm log groups are encrypted with this key too.
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com"))
        self.secrets = ServingSecrets(
            self,
            "Secrets",
            key=self.key,
            hf_token_secret_name=s.hf_token_secret_name,
            generated_key_id=s.generated_key_id,
            removal_policy=removal_policy,
        )

        self.access_log_bucket: s3.Bucket | None = None
        if s.alb_access_logs:
            self.access_log_bucket = access_log_bucket(self, "AlbAccessLogs", removal_policy=removal_policy)

        CfnOutput(
            self,
            outputs.MODEL_CACHE_FILE_SYSTEM_ID,
            value=self.model_cache.file_system.file_system_id,
            description="EFS file system holding the Hugging Face cache (HF_HOME)",
        )
