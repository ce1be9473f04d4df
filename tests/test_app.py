"""app.py as the environment owner meets it: what every stack of every environment in config/ gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llm_hosting_constructs.gpu_cluster import GPU_AMI_PARAMETER
from llmhost import outputs
from tests.cfn import CONFIG_DIR, ENVIRONMENTS, ROOT, cdk_synth

CONFIG = {env: yaml.safe_load((CONFIG_DIR / f"{env}.yaml").read_text()) for env in ENVIRONMENTS}


def test_every_stack_is_described_and_protected_where_stateful_resources_are_retained(cdk_out: Path) -> None:
    """Termination protection on every stack of a prod-like environment (retain_stateful), except the
    monitoring stack, which holds nothing that cannot be recreated; none elsewhere (`cdk destroy` works)."""
    for env in ENVIRONMENTS:
        manifest = json.loads((cdk_out / f"assembly-{env}" / "manifest.json").read_text())
        stacks = {
            a["displayName"].removeprefix(f"{env}/"): a["properties"]
            for a in manifest["artifacts"].values()
            if a["type"] == "aws:cloudformation:stack"
        }
        assert {outputs.NETWORK, outputs.MONITORING} <= stacks.keys()
        for name, props in stacks.items():
            protected = CONFIG[env]["retain_stateful"] and name != outputs.MONITORING
            assert props.get("terminationProtection", False) == protected, (env, name)
            template = json.loads((cdk_out / f"assembly-{env}" / props["templateFile"]).read_text())
            assert template["Description"].startswith(f"llm-hosting {env}: "), (env, name)


@pytest.mark.synth
def test_an_account_without_its_gpu_ami_in_context_fails_synth_with_one_line(tmp_path: Path) -> None:
    """A new environment in another account: `cdk synth` (no stack named, as `make synth` runs it) must fail
    naming the context key and the command, not write a template with a placeholder AMI."""
    config = tmp_path / "config"
    config.mkdir()
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    (config / "newacct.yaml").write_text(yaml.safe_dump({**data, "name": "newacct", "account": "999999999999"}))
    result = cdk_synth(tmp_path / "cdk.out", config_dir=config)
    assert result.returncode != 0, result.stdout[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("synth error: ")]
    key = f"ssm:account=999999999999:parameterName={GPU_AMI_PARAMETER}:region={data['region']}"
    assert line.startswith("synth error: /newacct/serving/Gpu: GpuCluster: ") and repr(key) in line
    assert "run `npx cdk synth` once with credentials for account 999999999999" in line
