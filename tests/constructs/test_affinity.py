"""GatewayAffinity: the serving tasks register in Cloud Map, may call each other's gateway port,
and their gateways get settings the gateway itself accepts."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from containers.gateway.app.core import contract
from containers.gateway.app.core.config import Settings
from llm_hosting_constructs.affinity import AffinityEnvNames, GatewayAffinity
from llm_hosting_constructs.inference_service import InferenceService
from tests.constructs.test_serving_constructs import service_kwargs, stack

ENV_NAMES = AffinityEnvNames(
    mode=contract.ENV_AFFINITY, dns_name=contract.ENV_AFFINITY_DNS_NAME,
    port=contract.ENV_AFFINITY_PORT, max_queue=contract.ENV_AFFINITY_MAX_QUEUE,
)  # fmt: skip


def build(**overrides) -> tuple[cdk.Stack, dict]:  # type: ignore[no-untyped-def]
    s, vpc = stack()
    kw = service_kwargs(s, vpc)
    svc = InferenceService(s, "Svc", **kw)
    gateway = kw["task_definition"].find_container("gateway")
    props = dict(
        vpc=vpc, service=svc.service, security_group=svc.security_group, gateway_container=gateway,
        gateway_port=contract.GATEWAY_PORT, mode="prefix", namespace_name="llm-hosting-dev.internal",
        env_names=ENV_NAMES,
    )  # fmt: skip
    props.update(overrides)
    GatewayAffinity(s, "Affinity", **props)
    return s, Template.from_stack(s).to_json()


def of_type(t: dict, kind: str) -> dict:
    return {k: r for k, r in t["Resources"].items() if r["Type"] == kind}


def test_tasks_register_as_a_records_in_a_private_namespace_of_the_vpc() -> None:
    _, t = build()
    (ns_id, ns), = of_type(t, "AWS::ServiceDiscovery::PrivateDnsNamespace").items()  # fmt: skip
    assert ns["Properties"]["Name"] == "llm-hosting-dev.internal"
    assert "Vpc" in ns["Properties"]["Vpc"]["Ref"]
    (sd_id, sd), = of_type(t, "AWS::ServiceDiscovery::Service").items()  # fmt: skip
    p = sd["Properties"]
    assert p["Name"] == "gateway"
    assert p["DnsConfig"]["RoutingPolicy"] == "MULTIVALUE"  # WEIGHTED would answer one task per query
    assert p["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]
    assert p["HealthCheckCustomConfig"] == {"FailureThreshold": 1}  # ECS reports task health
    assert p["NamespaceId"]["Fn::GetAtt"][0] == ns_id
    (svc,) = of_type(t, "AWS::ECS::Service").values()
    assert svc["Properties"]["ServiceRegistries"] == [{"RegistryArn": {"Fn::GetAtt": [sd_id, "Arn"]}}]


def test_gateways_may_reach_each_others_gateway_port_and_nothing_more() -> None:
    _, t = build()
    (svc,) = of_type(t, "AWS::ECS::Service").values()
    (sg_ref,) = svc["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    sg_id = sg_ref["Fn::GetAtt"][0]
    self_rules = [
        r["Properties"] for r in of_type(t, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == sg_ref and r["Properties"].get("SourceSecurityGroupId", {}).get("Fn::GetAtt", [None])[0] == sg_id
    ]  # fmt: skip
    assert len(self_rules) == 1
    rule = self_rules[0]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", contract.GATEWAY_PORT, contract.GATEWAY_PORT)


def test_the_gateway_gets_settings_it_accepts() -> None:
    _, t = build(mode="conversation", max_queue=6)
    (task,) = of_type(t, "AWS::ECS::TaskDefinition").values()
    (gw,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "gateway"]
    env = {e["Name"]: e["Value"] for e in gw["Environment"]}
    assert env[contract.ENV_AFFINITY] == "conversation"
    assert env[contract.ENV_AFFINITY_DNS_NAME] == "gateway.llm-hosting-dev.internal"
    assert set(env) <= set(contract.ALL_ENV_VARS) | {k for k in env if not k.startswith(contract.ENV_PREFIX)}
    gw_env = {k.removeprefix(contract.ENV_PREFIX).lower(): v for k, v in env.items() if k.startswith(contract.ENV_PREFIX)}
    s = Settings(**{k: v for k, v in gw_env.items() if k in Settings.model_fields})
    assert (s.affinity, s.affinity_dns_name, s.affinity_port, s.affinity_max_queue) == (
        "conversation", "gateway.llm-hosting-dev.internal", contract.GATEWAY_PORT, 6,
    )  # fmt: skip


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"mode": "off"}, "mode must be 'prefix' or 'conversation'"),
        ({"dns_ttl": cdk.Duration.seconds(300)}, "dns_ttl must be 1..60 s"),
        ({"max_queue": -1}, "max_queue must be >= 0"),
    ],
)
def test_rejects_contradictory_props(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**overrides)

