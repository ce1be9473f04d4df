"""cdk-nag's regulated packs (HIPAA Security, NIST 800-53 rev 5): what this app acknowledges, and why.

`app.py` registers both packs beside AwsSolutions, so any new finding fails synth. What the packs
flag and a regulated user needs is fixed in the constructs (default security group emptied, no
public IPs in the NAT subnets, HTTPS and access logs and deletion protection on the confidential
environment's ALB, KMS on every bucket that can take it, WAF on the API). The rest is acknowledged
here, per resource (a path under the environment's Stage) and per config: an acknowledgment that
depends on a config choice (plain HTTP, no ALB logs, no NAT) applies only where config makes that
choice, so prod cannot inherit dev's. An acknowledgment that matches no construct fails synth, so
none outlives the resource it was written for.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from aws_cdk import Acknowledgment, Stage, Validations

from config.schema import EnvironmentConfig

PACKS: tuple[str, ...] = ("HIPAA.Security", "NIST.800.53.R5")
NIST_ONLY: frozenset[str] = frozenset({"ALBWAFEnabled", "APIGWAssociatedWithWAF"})
"""Rules the HIPAA pack does not have."""


@dataclass(frozen=True)
class PackAcknowledgment:
    rule: str
    path: str
    """fnmatch pattern of construct paths below the Stage, e.g. `serving/Alb/LoadBalancer`."""
    reason: str
    optional: bool = False
    """True where the construct exists only for some values of a config field not modelled here."""


def acknowledgments(cfg: EnvironmentConfig) -> list[PackAcknowledgment]:
    """Every acknowledgment that applies to environment `cfg`."""
    a: list[PackAcknowledgment] = [
        PackAcknowledgment(
            "IAMNoInlinePolicy", "*/DefaultPolicy",
            "Each DefaultPolicy is attached to exactly one role of the same stack and scoped to that role's "
            "resources (CDK grants); a customer-managed policy would add a versioned resource and the same statements.",
        ),
        PackAcknowledgment(
            "EC2RestrictedCommonPorts", "network/Network/EndpointSecurityGroup",
            "The VPC endpoints' group admits only TCP 443 from the VPC's own CIDR (a token the rule cannot "
            "resolve), no other port and no 0.0.0.0/0.",
        ),
        PackAcknowledgment(
            "EC2RestrictedSSH", "network/Network/EndpointSecurityGroup",
            "No SSH: the only ingress rule is TCP 443 from the VPC's own CIDR (the rule cannot resolve the CIDR token).",
        ),
    ]
    if cfg.network.nat_gateways:
        a.append(PackAcknowledgment(
            "VPCNoUnrestrictedRouteToIGW", "network/Network/Vpc/EgressSubnet*/DefaultRoute",
            f"network.nat_gateways is {cfg.network.nat_gateways}: the NAT gateways' public subnets need the route to "
            "the internet gateway; workloads sit in private subnets and nothing there gets a public IP.",
        ))
    if cfg.api.waf_enabled is False:
        a.append(PackAcknowledgment(
            "APIGWAssociatedWithWAF", "api/FrontDoor/Api/DeploymentStage.*",
            "api.waf_enabled is false for this environment; keys, usage plans and throttling still apply.",
        ))
    a += [
        PackAcknowledgment(
            "APIGWCacheEnabledAndEncrypted", "api/FrontDoor/Api/DeploymentStage.*",
            "No response cache at all: streaming integrations cannot be cached, and LLM answers are per request "
            "and per tenant; a cache would hold prompts' answers and could serve them across tenants.",
        ),
        PackAcknowledgment(
            "APIGWSSLEnabled", "api/FrontDoor/Api/DeploymentStage.*",
            "No API Gateway client certificate: the internal ALB cannot verify one without a trust store of API "
            "Gateway's self-signed certificate; the backend authenticates the front door by its Secrets Manager "
            "bearer key instead, and admits only the VPC link's security group.",
        ),
    ]
    if "ecs" in cfg.backends and cfg.ecs is not None:
        a += [
            PackAcknowledgment(
                "ALBWAFEnabled", "serving/Alb/LoadBalancer",
                "Internal ALB reachable only from the API's VPC link security group; the WAF web ACL sits on the "
                "API Gateway stage in front of it, so every request was already inspected.",
            ),
            PackAcknowledgment(
                "EFSInBackupPlan", "model-cache/ModelCache/FileSystem",
                "The EFS file system is a cache of public model weights that the pre-warm task rebuilds from S3 or "
                "the Hub; it holds no prompts or customer data (EFS automatic backups are on where retain_stateful).",
            ),
            PackAcknowledgment(
                "SecretsManagerRotationEnabled", "model-cache/Secrets/ApiKeys",
                "The gateway's API keys rotate by the documented procedure (new value, API redeploy, ECS deployment); "
                "an automatic rotation Lambda cannot restart both consumers in order.",
            ),
            PackAcknowledgment(
                "SecretsManagerRotationEnabled", "model-cache/Secrets/HfToken",
                "A Hugging Face access token is issued and revoked at huggingface.co; AWS cannot rotate it.",
                optional=True,
            ),
        ]
        if not cfg.ecs.certificate_arn:
            for rule in ("ALBHttpToHttpsRedirection", "ELBv2ACMCertificateRequired"):
                a.append(PackAcknowledgment(
                    rule, "serving/Alb/LoadBalancer/Http",
                    "ecs.certificate_arn is unset for this non-confidential environment: HTTP only between the "
                    "VPC link's ENIs and the internal ALB; synth requires HTTPS where tags mark data confidential.",
                ))
        if not cfg.retain_stateful:
            a.append(PackAcknowledgment(
                "ELBDeletionProtectionEnabled", "serving/Alb/LoadBalancer",
                "retain_stateful is false: this environment is torn down with `cdk destroy`; prod keeps the "
                "ALB's deletion protection on.",
            ))
        if not cfg.ecs.alb_access_logs:
            a.append(PackAcknowledgment(
                "ELBLoggingEnabled", "serving/Alb/LoadBalancer",
                "ecs.alb_access_logs is false here; the API access log and the gateway's request log record "
                "every request that reaches this ALB.",
            ))
        else:
            a += [
                PackAcknowledgment(
                    "S3DefaultEncryptionKMS", "model-cache/AlbAccessLogs",
                    "ALB access logs can only be delivered to a bucket with SSE-S3 (AES-256), not SSE-KMS.",
                ),
                PackAcknowledgment(
                    "S3BucketLoggingEnabled", "model-cache/AlbAccessLogs",
                    "This bucket is itself the access-log destination; logging it would log the logging.",
                ),
                PackAcknowledgment(
                    "S3BucketReplicationEnabled", "model-cache/AlbAccessLogs",
                    "Access logs are retained in-region under versioning and lifecycle rules; cross-region "
                    "replication is an account-level choice outside this app.",
                ),
            ]
    if "sagemaker" in cfg.backends and cfg.sagemaker is not None:
        a += [
            PackAcknowledgment(
                "CloudWatchAlarmAction", "sagemaker/Endpoint/*Alarm",
                "The endpoint's own alarms feed the scaling view; paging is the monitoring stack's composite alarm, "
                "which has the SNS action.",
            ),
            PackAcknowledgment(
                "SageMakerEndpointConfigurationKMSKeyConfigured", "sagemaker/Endpoint/EndpointConfig",
                "The instance type has local NVMe storage, for which CreateEndpointConfig rejects a KMS key; NVMe "
                "instance storage is encrypted by the hardware.",
                optional=True,
            ),
        ]
        if cfg.sagemaker.data_capture is not None:
            a += [
                PackAcknowledgment(
                    "S3BucketReplicationEnabled", "sagemaker/Endpoint/DataCapture*",
                    "Captured payloads expire after data_capture.retention_days and must not leave the region.",
                ),
                PackAcknowledgment(
                    "S3DefaultEncryptionKMS", "sagemaker/Endpoint/DataCaptureAccessLogs",
                    "S3 server access logs can only be delivered to a bucket with SSE-S3, not SSE-KMS.",
                ),
            ]
    a.append(PackAcknowledgment(
        "CloudWatchAlarmAction", "monitoring/Alarms/*",
        "Only the composite alarm pages (it has the SNS action); member alarms without actions are its inputs "
        "and the dashboard's, so on-call gets one page per incident instead of one per symptom.",
    ))
    return a


def acknowledge_regulated_packs(stage: Stage, cfg: EnvironmentConfig) -> None:
    """Apply `acknowledgments(cfg)` to the constructs of `stage`; fails when one matches nothing."""
    prefix = stage.node.path + "/"
    constructs = [(c.node.path.removeprefix(prefix), c) for c in stage.node.find_all()]
    for ack in acknowledgments(cfg):
        matched = [c for path, c in constructs if fnmatchcase(path, ack.path)]
        if not matched and not ack.optional:
            raise ValueError(f"compliance acknowledgment {ack.rule} at {ack.path!r} matches no construct in {cfg.name}")
        packs = [p for p in PACKS if not (ack.rule in NIST_ONLY and p == "HIPAA.Security")]
        for construct in matched:
            Validations.of(construct).acknowledge(
                *(Acknowledgment(id=f"{pack}::{pack}-{ack.rule}", reason=ack.reason) for pack in packs)
            )
