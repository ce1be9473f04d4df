"""The API stack: the public front door (REST API, VPC link v2 to the internal ALB, keys, WAF)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Acknowledgment, CfnOutput, Duration, Fn, RemovalPolicy, SecretValue, Stack, Validations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from llmhost import parameters
from llm_hosting_constructs.front_door import CustomDomainProps, LlmFrontDoor, TenantPlan
from llm_hosting_constructs.waf import RegionalWebAcl
from llmhost import outputs
from stacks import derived
from stacks.network import NetworkStack


@dataclass(frozen=True)
class AlbBackend:
    """The serving stack's internal ALB as this stack finds it: SSM parameter names (read at deploy, so a
    replaced ALB or security group updates this stack instead of blocking the serving stack's update),
    and the listener's port and protocol (config, known at synth)."""

    load_balancer_arn_parameter: str
    dns_name_parameter: str
    security_group_id_parameter: str
    frontdoor_security_group_id_parameter: str
    port: int
    https: bool


@dataclass(frozen=True)
class ApiSettings:
    """Everything app.py derives from the config for this stack (``api:`` and ``ecs.tls_host_name``).

    ``backend_key_field`` is the JSON key of the gateway's keys secret whose value the front door
    sends as its bearer key; ``domain_name`` + ``certificate_arn`` (+ the hosted zone) add a custom
    domain; ``waf_rate_limit`` None means no WAF.
    """

    tenants: Sequence[TenantPlan]
    api_name: str = derived("llm-hosting-<env>")
    stage_name: str = derived("the environment's name")
    rate_limit: float
    burst_limit: int
    stream_timeout_seconds: int
    access_log_retention: logs.RetentionDays
    waf_rate_limit: int | None
    backend_key_field: str | None = derived(
        "the front door's key id in the gateway's keys secret (app.py FRONTDOOR_KEY_ID)", default=None
    )
    domain_name: str | None = None
    certificate_arn: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None
    tenant_key_map_parameter_name: str | None = derived(
        "SSM parameter of the tenants' key ids (front_door.TENANT_KEY_MAP_PARAMETER)", default=None
    )
    tls_host_name: str | None = None


class ApiStack(Stack):
    """Composes `LlmFrontDoor` (+ `RegionalWebAcl` when `settings.waf_rate_limit` is set) in front of `backend`.

    `backend_key_secret` (+ `settings.backend_key_field`, a JSON key of it) is the gateway's key for the
    front door: sent as the backend's Authorization header on every route.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        network: NetworkStack,
        backend: AlbBackend,
        backend_key_secret: secretsmanager.ISecret | None,
        settings: ApiSettings,
        environment: str,
        removal_policy: RemovalPolicy,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        vpc, subnets = network.vpc, network.workload_subnets
        s = settings
        custom_domain = None
        if s.domain_name and s.certificate_arn:
            zone = (
                route53.HostedZone.from_hosted_zone_attributes(
                    self, "Zone", hosted_zone_id=s.hosted_zone_id, zone_name=s.hosted_zone_name
                )
                if s.hosted_zone_id and s.hosted_zone_name
                else None
            )
            custom_domain = CustomDomainProps(
                domain_name=s.domain_name,
                certificate=acm.Certificate.from_certificate_arn(self, "Certificate", s.certificate_arn),
                hosted_zone=zone,
            )

        def read(name: str) -> str:
            return ssm.StringParameter.value_for_string_parameter(self, name)

        alb_security_group_id = read(backend.security_group_id_parameter)
        load_balancer = elbv2.ApplicationLoadBalancer.from_application_load_balancer_attributes(
            self,
            "Alb",
            load_balancer_arn=read(backend.load_balancer_arn_parameter),
            # With a TLS host name the front door calls that name, so the ALB's DNS name is never read
            # (an unused SSM-typed template parameter would be cfn-lint W2001).
            load_balancer_dns_name=read(backend.dns_name_parameter) if s.tls_host_name is None else None,
            security_group_id=alb_security_group_id,
            security_group_allows_all_outbound=False,
        )
        self.front_door = LlmFrontDoor(
            self,
            "FrontDoor",
            vpc=vpc,
            subnets=subnets,
            security_group=ec2.SecurityGroup.from_security_group_id(
                self, "FrontdoorSecurityGroup", read(backend.frontdoor_security_group_id_parameter), mutable=False
            ),
            load_balancer=load_balancer,
            backend_protocol="https" if backend.https else "http",
            backend_port=backend.port,
            tls_host_name=s.tls_host_name,
            tenants=s.tenants,
            api_name=s.api_name,
            stage_name=s.stage_name,
            rate_limit=s.rate_limit,
            burst_limit=s.burst_limit,
            stream_timeout=Duration.seconds(s.stream_timeout_seconds),
            access_log_retention=s.access_log_retention,
            custom_domain=custom_domain,
            removal_policy=removal_policy,
            tenant_key_map_parameter_name=s.tenant_key_map_parameter_name,
            backend_bearer=(
                SecretValue.secrets_manager(backend_key_secret.secret_arn, json_field=s.backend_key_field)
                if backend_key_secret is not None
                else None
            ),
        )
        self.waf: RegionalWebAcl | None = None
        if s.waf_rate_limit is not None:
            self.waf = RegionalWebAcl(
                self,
                "Waf",
                rate_limit=s.waf_rate_limit,
                log_retention=s.access_log_retention,
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

        ssm.StringParameter(
            self,
            "RestApiIdParameter",
            parameter_name=parameters.name(environment, parameters.REST_API_ID),
            string_value=self.front_door.api.rest_api_id,
            description=f"llm-hosting {environment}: REST API id, read by the monitoring stack at deploy",
        )
        CfnOutput(self, outputs.API_URL, value=self.front_door.url, description="Invoke URL of the API")
        CfnOutput(
            self,
            outputs.API_BACKEND_SECURITY_GROUP,
            value=alb_security_group_id,
            description="Security group of the internal ALB behind the VPC link, as read at this stack's last deploy",
        )
        CfnOutput(
            self,
            outputs.API_KEY_IDS,
            value=Fn.join(",", [k.key_id for k in self.front_door.api_keys.values()]),
            description="API key IDs (not values): aws apigateway get-api-key --api-key ID --include-value",
        )
