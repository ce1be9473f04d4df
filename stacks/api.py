"""The API stack: the public front door (REST API, VPC link v2 to the internal ALB, keys, WAF)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, CfnOutput, Duration, Fn, RemovalPolicy, SecretValue, Stack, Validations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from llm_hosting_constructs.front_door import CustomDomainProps, LlmFrontDoor, TenantPlan
from llm_hosting_constructs.waf import RegionalWebAcl
from llmhost import outputs


class ApiStack(Stack):
    """Composes `LlmFrontDoor` (+ `RegionalWebAcl` when `waf_rate_limit` is set) in front of `listener`.

    `backend_key_secret` (+ `backend_key_field`, a JSON key of it) is the gateway's key for the front
    door: sent as the backend's Authorization header on every route.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        frontdoor_security_group: ec2.ISecurityGroup,
        listener: elbv2.ApplicationListener,
        tenants: Sequence[TenantPlan],
        api_name: str,
        stage_name: str,
        rate_limit: float,
        burst_limit: int,
        stream_timeout: Duration,
        access_log_retention: logs.RetentionDays,
        waf_rate_limit: int | None,
        removal_policy: RemovalPolicy,
        backend_key_secret: secretsmanager.ISecret | None = None,
        backend_key_field: str | None = None,
        domain_name: str | None = None,
        certificate_arn: str | None = None,
        hosted_zone_id: str | None = None,
        hosted_zone_name: str | None = None,
        tenant_key_map_parameter_name: str | None = None,
        backend_host: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        custom_domain = None
        if domain_name and certificate_arn:
            zone = (
                route53.HostedZone.from_hosted_zone_attributes(
                    self, "Zone", hosted_zone_id=hosted_zone_id, zone_name=hosted_zone_name
                )
                if hosted_zone_id and hosted_zone_name
                else None
            )
            custom_domain = CustomDomainProps(
                domain_name=domain_name,
                certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn),
                hosted_zone=zone,
            )
        https = listener.protocol == elbv2.ApplicationProtocol.HTTPS
        self.front_door = LlmFrontDoor(
            self,
            "FrontDoor",
            vpc=vpc,
            subnets=subnets,
            security_group=frontdoor_security_group,
            load_balancer=listener.load_balancer,
            backend_protocol="https" if https else "http",
            backend_port=int(listener.port),
            backend_host=backend_host,
            tenants=tenants,
            api_name=api_name,
            stage_name=stage_name,
            rate_limit=rate_limit,
            burst_limit=burst_limit,
            stream_timeout=stream_timeout,
            access_log_retention=access_log_retention,
            custom_domain=custom_domain,
            removal_policy=removal_policy,
            tenant_key_map_parameter_name=tenant_key_map_parameter_name,
            backend_bearer=(
                SecretValue.secrets_manager(backend_key_secret.secret_arn, json_field=backend_key_field)
                if backend_key_secret is not None
                else None
            ),
        )
        self.waf: RegionalWebAcl | None = None
        if waf_rate_limit is not None:
            self.waf = RegionalWebAcl(
                self,
                "Waf",
                rate_limit=waf_rate_limit,
                log_retention=access_log_retention,
                removal_policy=removal_policy,
            )
            self.waf.associate("StageAssociation", self.front_door.stage.stage_arn)
        else:
            Validations.of(self.front_door.stage).acknowledge(
                Acknowledgment(
                    id="AwsSolutions::AwsSolutions-APIG3",
                    reason="WAF is switched off for this environment in config (api.waf_enabled: false, dev); "
                    "API keys, usage plans and stage throttling still apply.",
                )
            )

        CfnOutput(self, outputs.API_URL, value=self.front_door.url, description="Invoke URL of the API")
        CfnOutput(
            self,
            outputs.API_KEY_IDS,
            value=Fn.join(",", [k.key_id for k in self.front_door.api_keys.values()]),
            description="API key IDs (not values): aws apigateway get-api-key --api-key ID --include-value",
        )
