"""Reading the synthesized templates of every environment: the task's containers and the REST API,
checked against the config files (an independent source), and the two stacks' secrets agreeing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.cfn import ENVIRONMENTS, ROOT
from tools.local.cfn import Environment, TemplateError
from tools.local.gateway import dockerfile_runtime, local_gateway_command, local_gateway_environment
from tools.local.template import read_api, read_task

CONFIG = {env: yaml.safe_load((ROOT / "config" / f"{env}.yaml").read_text()) for env in ENVIRONMENTS}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_task_containers(cdk_out: Path, env: str) -> None:
    task = read_task(Environment.load(cdk_out, env), cdk_out)
    assert task.vllm.entry_point == ["vllm", "serve"] and task.vllm.command[0] == CONFIG[env]["model"]["id"]
    assert task.gateway.depends_on == {"vllm": "HEALTHY"}
    assert json.loads(task.gateway.secrets["GATEWAY_API_KEYS"]).keys() == {"frontdoor"}
    assert task.gateway.image_asset_dir is not None and (task.gateway.image_asset_dir / "app" / "server.py").exists()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_api_stage_plans_and_throttling_match_the_config(cdk_out: Path, env: str) -> None:
    api = read_api(Environment.load(cdk_out, env))
    cfg = CONFIG[env]["api"]
    assert api.stage == env and api.api_key_source == "HEADER"
    assert {(m.path, m.http_method) for m in api.methods} >= {("/v1/chat/completions", "POST"), ("/v1/models", "GET")}
    assert all(m.api_key_required and m.integration_type == "HTTP_PROXY" for m in api.methods)
    assert {p.name: (p.rate_limit, p.burst_limit) for p in api.usage_plans} == {
        t["name"]: (t["rate_limit"], t["burst_limit"]) for t in cfg["tenants"]
    }
    assert all(len(p.key_ids) == 1 for p in api.usage_plans)
    assert (api.stage_rate_limit, api.stage_burst_limit) == (cfg["rate_limit"], cfg["burst_limit"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_front_door_bearer_is_the_gateways_frontdoor_key_once_resolved(cdk_out: Path, env: str) -> None:
    """The api stack's dynamic reference and the serving stack's ECS secret name the same secret."""
    e = Environment.load(cdk_out, env)
    key = json.loads(read_task(e, cdk_out).gateway.secrets["GATEWAY_API_KEYS"])["frontdoor"]
    for m in read_api(e).methods:
        assert m.request_parameters["integration.request.header.Authorization"] == f"'Bearer {key}'", m.path


def test_gateway_runs_the_images_entry_point_with_the_task_environment(cdk_out: Path) -> None:
    task = read_task(Environment.load(cdk_out, "dev"), cdk_out)
    argv, cwd = local_gateway_command(task.gateway, python="py")
    assert argv == ["py", "-m", "app.server"] and cwd == task.gateway.image_asset_dir
    env = local_gateway_environment(task.gateway, port=9001, vllm_port=9002, template_vllm_port=8000, base={"GATEWAY_X": "stale", "PATH": "/bin"})
    _, image_env = dockerfile_runtime(cwd)
    assert image_env["GATEWAY_WORKERS"] == env["GATEWAY_WORKERS"] == "1"  # from the Dockerfile's ENV
    assert env["GATEWAY_UPSTREAM_URL"] == "http://127.0.0.1:9002" and env["GATEWAY_PORT"] == "9001"
    assert env["GATEWAY_SERVED_MODEL_NAME"] == CONFIG["dev"]["model"]["served_name"]
    assert "GATEWAY_X" not in env and env["PATH"] == "/bin"


def test_unknown_environment_is_one_line(cdk_out: Path) -> None:
    # A name config/ does not have (config/qa.yaml is what README's example adds).
    unknown = next(n for n in ("qa", *(f"qa{i}" for i in range(2, 100))) if n not in ENVIRONMENTS)
    found = re.escape(", ".join(ENVIRONMENTS))
    message = rf"no templates of environment '{unknown}' \(found: {found}\); run `make synth`"
    with pytest.raises(TemplateError, match=message):
        Environment.load(cdk_out, unknown)
