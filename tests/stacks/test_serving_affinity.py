"""dev.yaml with `ecs.affinity: prefix`, through the real CLI (cdk-nag included), cfn-lint and checkov: the
serving template declares the discovery, the gateway-to-gateway rule and the gateway's settings."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from config.schema import CONFIG_DIR
from containers.gateway.app.core import contract
from tests.cfn import ROOT, cdk_synth, only, resources
from tests.gates.test_checkov import run_checkov


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("affinity")
    cfg = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    cfg["ecs"]["affinity"] = "prefix"
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


def test_discovery_is_declared_and_the_service_registered(template: dict) -> None:
    ns = only(template, "AWS::ServiceDiscovery::PrivateDnsNamespace")["Properties"]
    assert ns["Name"] == "llm-hosting-dev.internal"
    sd_id, sd = next(iter(resources(template, "AWS::ServiceDiscovery::Service").items()))
    assert sd["Properties"]["DnsConfig"]["RoutingPolicy"] == "MULTIVALUE"
    svc = only(template, "AWS::ECS::Service")["Properties"]
    assert svc["ServiceRegistries"] == [{"RegistryArn": {"Fn::GetAtt": [sd_id, "Arn"]}}]


def test_gateway_runs_with_affinity_and_may_reach_its_peers(template: dict) -> None:
    task = next(r for k, r in resources(template, "AWS::ECS::TaskDefinition").items() if k.startswith("Inference"))["Properties"]
    (gw,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "gateway"]
    env = {e["Name"]: e["Value"] for e in gw["Environment"]}
    assert env[contract.ENV_AFFINITY] == "prefix"
    assert env[contract.ENV_AFFINITY_DNS_NAME] == "gateway.llm-hosting-dev.internal"
    svc = only(template, "AWS::ECS::Service")["Properties"]
    (sg,) = svc["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    peer_rules = [
        r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == sg and r["Properties"].get("SourceSecurityGroupId") == sg
    ]  # fmt: skip
    assert [(r["FromPort"], r["ToPort"]) for r in peer_rules] == [(contract.GATEWAY_PORT, contract.GATEWAY_PORT)]

