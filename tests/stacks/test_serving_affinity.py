"""Conversation affinity in the serving template. On (the default, `prefix`): every environment's
template declares the discovery, registers the service, gives the gateway its settings and lets
gateways reach each other (these templates also pass cdk-nag, cfn-lint and checkov in tests/gates).
Off: dev.yaml with `ecs.affinity: off` and nine tasks, the way out for a service above Cloud Map's
eight answers, through the real CLI (cdk-nag included), cfn-lint and checkov: none of it is there."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from config.schema import load_all
from containers.gateway.app.core import contract
from llmhost import outputs
from tests.cfn import CONFIG_DIR, ENVIRONMENTS, ROOT, cdk_synth, only, resources
from tests.gates.test_checkov import run_checkov

pytestmark = pytest.mark.synth
CONFIG = {c.name: c for c in load_all(CONFIG_DIR)}
AFFINITY_ON = [e for e in ENVIRONMENTS if CONFIG[e].ecs is not None and CONFIG[e].ecs.affinity != "off"]


def serving(templates: dict, env: str) -> dict:
    return templates[env][outputs.stack_name(env, outputs.SERVING)]


def gateway_env(template: dict) -> dict[str, str]:
    task = next(r for k, r in resources(template, "AWS::ECS::TaskDefinition").items() if k.startswith("Inference"))["Properties"]
    (gw,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "gateway"]
    return {e["Name"]: e["Value"] for e in gw["Environment"]}


def peer_rules(template: dict) -> list[dict]:
    """Ingress rules of the tasks' security group from itself (gateway to gateway)."""
    svc = only(template, "AWS::ECS::Service")["Properties"]
    (sg,) = svc["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    return [
        r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == sg and r["Properties"].get("SourceSecurityGroupId") == sg
    ]  # fmt: skip


def test_every_environment_routes_by_affinity_by_default() -> None:
    """The config default (docs/affinity.md, The default) reaches the committed environments."""
    assert AFFINITY_ON == ENVIRONMENTS


@pytest.mark.parametrize("env", AFFINITY_ON)
def test_discovery_is_declared_and_the_service_registered(templates: dict, env: str) -> None:
    t = serving(templates, env)
    ns = only(t, "AWS::ServiceDiscovery::PrivateDnsNamespace")["Properties"]
    assert ns["Name"] == f"llm-hosting-{env}.internal"
    sd_id, sd = next(iter(resources(t, "AWS::ServiceDiscovery::Service").items()))
    assert sd["Properties"]["DnsConfig"]["RoutingPolicy"] == "MULTIVALUE"
    svc = only(t, "AWS::ECS::Service")["Properties"]
    assert svc["ServiceRegistries"] == [{"RegistryArn": {"Fn::GetAtt": [sd_id, "Arn"]}}]


@pytest.mark.parametrize("env", AFFINITY_ON)
def test_gateway_runs_with_affinity_and_may_reach_its_peers(templates: dict, env: str) -> None:
    t = serving(templates, env)
    env_vars = gateway_env(t)
    assert env_vars[contract.ENV_AFFINITY] == CONFIG[env].ecs.affinity
    assert env_vars[contract.ENV_AFFINITY_DNS_NAME] == f"gateway.llm-hosting-{env}.internal"
    assert [(r["FromPort"], r["ToPort"]) for r in peer_rules(t)] == [(contract.GATEWAY_PORT, contract.GATEWAY_PORT)]


@pytest.fixture(scope="module")
def template_off(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("affinity-off")
    cfg = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    cfg["ecs"]["affinity"] = "off"
    cfg["ecs"]["max_capacity"] = 9  # allowed only with affinity off
    (tmp / "config").mkdir()
    (tmp / "config" / "dev.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp / "out"
    result = cdk_synth(out, "-c", f"config_dir={tmp / 'config'}")
    assert result.returncode == 0, result.stderr[-3000:]  # cdk-nag findings would fail here
    (path,) = [p for p in out.rglob("*.template.json") if p.name.startswith("devserving")]
    lint = subprocess.run(
        [str(ROOT / ".venv/bin/cfn-lint"), "--config-file", str(ROOT / ".cfnlintrc.yaml"), "--", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout[-3000:]
    assert run_checkov(out / "assembly-dev") == []
    return json.loads(path.read_text())


def test_affinity_off_declares_no_discovery_and_no_peer_path(template_off: dict) -> None:
    assert not resources(template_off, "AWS::ServiceDiscovery::PrivateDnsNamespace")
    assert not resources(template_off, "AWS::ServiceDiscovery::Service")
    assert "ServiceRegistries" not in only(template_off, "AWS::ECS::Service")["Properties"]
    assert gateway_env(template_off).get(contract.ENV_AFFINITY, "off") == "off"
    assert peer_rules(template_off) == []
