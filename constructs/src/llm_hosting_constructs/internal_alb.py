"""An internal Application Load Balancer in front of the serving tasks, open only to named callers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .checkov import acknowledge_finding, skip_checkov
from .reuse import existing_or_new, reject_contradictions

MAX_IDLE_TIMEOUT_S = 4000
MAX_DEREGISTRATION_DELAY_S = 3600


class InternalAlb(Construct):
    """Internal ALB + listener + IP target group for a GPU service.

    Safe defaults: not internet-facing, in the private ``subnets``, a security group with no
    ingress at all until :meth:`allow_from` names a caller (the listener is never opened to
    0.0.0.0/0) and egress only to the targets, invalid header fields dropped, HTTPS with
    TLS 1.2+ when ``certificate_arn`` is given (plain HTTP otherwise: traffic then stays
    inside the VPC, from the front door's ENIs to this ALB).

    Tuned for LLM traffic: ``idle_timeout`` long enough for long prefills and silent
    generations (the gateway's server keep-alive must be longer still), least-outstanding-
    requests routing (requests differ 100× in length; round robin piles them on one GPU),
    a health check on ``health_check_path`` that tolerates a busy target (5 × 15 s before
    it is taken out), and a ``deregistration_delay`` that lets a draining target finish
    the longest stream the API allows before ECS stops it.

    ``access_log_bucket`` (SSE-S3: ALB access logs cannot use a KMS key; ``log_groups.access_log_bucket``
    makes one) turns on access logs.
    ``existing_security_group`` puts the ALB in your group (``allow_from`` still adds the callers'
    rules to it), or ``security_group_props`` adjusts the created one, not both.

    Attributes: ``load_balancer``, ``listener``, ``target_group``, ``security_group``, ``port``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        target_port: int,
        health_check_path: str,
        idle_timeout: Duration = Duration.seconds(900),
        deregistration_delay: Duration = Duration.seconds(900),
        certificate_arn: str | None = None,
        access_log_bucket: s3.IBucket | None = None,
        access_log_prefix: str = "alb",
        deletion_protection: bool = False,
        existing_security_group: ec2.ISecurityGroup | None = None,
        security_group_props: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        reject_contradictions("InternalAlb", security_group=(existing_security_group, security_group_props))
        if not 1 <= idle_timeout.to_seconds() <= MAX_IDLE_TIMEOUT_S:
            raise ValueError(f"InternalAlb: idle_timeout must be 1..{MAX_IDLE_TIMEOUT_S} s")
        if not 0 <= deregistration_delay.to_seconds() <= MAX_DEREGISTRATION_DELAY_S:
            raise ValueError(f"InternalAlb: deregistration_delay must be 0..{MAX_DEREGISTRATION_DELAY_S} s")
        if not health_check_path.startswith("/"):
            raise ValueError("InternalAlb: health_check_path must start with '/'")

        self.security_group = existing_or_new(
            existing_security_group,
            security_group_props,
            lambda **props: ec2.SecurityGroup(self, "SecurityGroup", **props),
            vpc=vpc,
            description="Internal ALB: ingress only from the API front door, egress only to the serving tasks",
            allow_all_outbound=False,
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            vpc_subnets=subnets,
            internet_facing=False,
            security_group=self.security_group,
            idle_timeout=idle_timeout,
            drop_invalid_header_fields=True,
            deletion_protection=deletion_protection,
            http2_enabled=True,
        )
        if access_log_bucket is not None:
            self.load_balancer.log_access_logs(access_log_bucket, access_log_prefix)
        else:
            no_logs = (
                "Access logs are on where the config asks (prod); in dev/staging the gateway's "
                "per-request log line and the API's access log carry the same facts."
            )
            acknowledge_finding(self.load_balancer, no_logs, aws_solutions_rule="ELB2", checkov_check="CKV_AWS_91")

        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "TargetGroup",
            vpc=vpc,
            port=target_port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            deregistration_delay=deregistration_delay,
            load_balancing_algorithm_type=elbv2.TargetGroupLoadBalancingAlgorithmType.LEAST_OUTSTANDING_REQUESTS,
            health_check=elbv2.HealthCheck(
                path=health_check_path,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=5,
            ),
        )
        if certificate_arn:
            self.port = 443
            self.listener = self.load_balancer.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=False,
                default_target_groups=[self.target_group],
            )
        else:
            self.port = 80
            self.listener = self.load_balancer.add_listener(
                "Http",
                port=80,
                protocol=elbv2.ApplicationProtocol.HTTP,
                open=False,
                default_target_groups=[self.target_group],
            )
            plain = (
                "Internal listener without a configured certificate: reachable only from the front door's "
                "security group inside the VPC; set ecs.certificate_arn for HTTPS with TLS 1.2+."
            )
            skip_checkov(self.listener, "CKV_AWS_2", plain)
            skip_checkov(self.listener, "CKV_AWS_103", plain)

    def allow_from(self, peer: ec2.IConnectable, description: str) -> None:
        """Let ``peer`` reach the listener (ingress here, egress on the peer's group)."""
        peer.connections.allow_to(self.load_balancer, ec2.Port.tcp(self.port), description)


__all__ = ["InternalAlb"]
