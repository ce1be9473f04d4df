"""Conversation affinity between the gateways of one ECS service: how they find each other.

The gateway (``containers/gateway/app/core/affinity.py``) hashes each conversation onto a ring of
its service's tasks and forwards a turn to the task whose vLLM holds the conversation's prefix.
It needs the address of every task, which this construct publishes with AWS Cloud Map service
discovery: ECS registers each task's private IP (awsvpc) as an ``A`` record in a private DNS
namespace and removes it when the task stops. A gateway finds its peers with one DNS query
answered inside the VPC: no AWS API call, no VPC endpoint, no extra always-on component.

Why not ECS Service Connect: its Envoy proxy load-balances a logical name across the tasks, so a
caller cannot pick the one task that owns a key. Why ``MULTIVALUE``: ``WEIGHTED`` answers one
random task per query. A multivalue answer lists at most eight healthy records, so every gateway
sees the whole ring only while the service runs eight tasks or fewer (the config rejects a larger
``max_capacity``; during a rolling deployment, beyond eight, rings may briefly disagree: requests
are still served, some without their cache).

Attributes: ``namespace``, ``discovery_service``, ``dns_name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

AffinityMode = Literal["prefix", "conversation"]
MAX_DNS_ANSWER_TASKS = 8
"""Cloud Map MULTIVALUE: Route 53 answers with up to eight healthy records."""


@dataclass(frozen=True, kw_only=True)
class AffinityEnvNames:
    """The gateway's environment variable names (for a gateway other than the packaged one)."""

    mode: str
    dns_name: str
    port: str
    max_queue: str

    @classmethod
    def packaged(cls) -> AffinityEnvNames:
        """The names the gateway this package ships reads (its contract)."""
        from .gateway import contract

        return cls(
            mode=contract.ENV_AFFINITY, dns_name=contract.ENV_AFFINITY_DNS_NAME,
            port=contract.ENV_AFFINITY_PORT, max_queue=contract.ENV_AFFINITY_MAX_QUEUE,
        )  # fmt: skip


class GatewayAffinity(Construct):
    """Cloud Map discovery of a service's gateways, their gateway-to-gateway rule, and their settings.

    Props: ``vpc`` (the private DNS namespace is resolvable only there; default the service's
    cluster's), ``service`` (its tasks
    are registered), ``security_group`` (the tasks' group: gateway port open to itself),
    ``gateway_container`` (gets the ``GATEWAY_AFFINITY*`` environment, named by ``env_names``,
    default the packaged gateway's), ``gateway_port`` (default the packaged gateway's),
    ``mode`` (``prefix`` or ``conversation``), ``namespace_name`` (unique in the VPC),
    ``service_name`` (the DNS label, default ``gateway``), ``dns_ttl`` (default 10 s: a stopped
    task leaves the peers' rings within about the TTL plus the gateway's refresh interval),
    ``max_queue`` (serve locally while the owner's vLLM queue is deeper; default 4).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc | None = None,
        service: ecs.BaseService,
        security_group: ec2.ISecurityGroup,
        gateway_container: ecs.ContainerDefinition,
        gateway_port: int | None = None,
        mode: AffinityMode,
        namespace_name: str,
        env_names: AffinityEnvNames | None = None,
        service_name: str = "gateway",
        dns_ttl: Duration = Duration.seconds(10),
        max_queue: int = 4,
    ) -> None:
        super().__init__(scope, id_)
        if mode not in ("prefix", "conversation"):
            raise ValueError(f"GatewayAffinity: mode must be 'prefix' or 'conversation', got {mode!r}")
        if not 1 <= dns_ttl.to_seconds() <= 60:
            raise ValueError("GatewayAffinity: dns_ttl must be 1..60 s, or departed tasks linger in the rings")
        if max_queue < 0:
            raise ValueError("GatewayAffinity: max_queue must be >= 0")
        env_names = env_names or AffinityEnvNames.packaged()
        if gateway_port is None:
            from .gateway import contract

            gateway_port = contract.GATEWAY_PORT
        self.namespace = servicediscovery.PrivateDnsNamespace(
            self, "Namespace", name=namespace_name, vpc=vpc or service.cluster.vpc,
            description="Gateways of the LLM serving service find each other (conversation affinity)",
        )  # fmt: skip
        self.discovery_service = self.namespace.create_service(
            "Gateways",
            name=service_name,
            dns_record_type=servicediscovery.DnsRecordType.A,
            dns_ttl=dns_ttl,
            routing_policy=servicediscovery.RoutingPolicy.MULTIVALUE,
            # ECS reports each task's health to Cloud Map: an unhealthy task leaves the answer.
            custom_health_check=servicediscovery.HealthCheckCustomConfig(failure_threshold=1),
            description="One A record per running serving task (its awsvpc private IP)",
        )
        service.associate_cloud_map_service(service=self.discovery_service)
        self.dns_name = f"{service_name}.{namespace_name}"
        security_group.add_ingress_rule(
            security_group, ec2.Port.tcp(gateway_port), "Gateway to gateway: affinity forwards and peer health polls"
        )
        gateway_container.add_environment(env_names.mode, mode)
        gateway_container.add_environment(env_names.dns_name, self.dns_name)
        gateway_container.add_environment(env_names.port, str(gateway_port))
        gateway_container.add_environment(env_names.max_queue, str(max_queue))
