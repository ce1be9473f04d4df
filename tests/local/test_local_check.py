"""`make local-check` for every environment in config/: the smoke suite through the emulated front door,
on the templates as synthesized; and templates broken on purpose, which must make it fail.

Starts the vLLM CPU engine (about 1-3 minutes per distinct command line): run under
``flock /tmp/llmh-vllm.lock``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.cfn import ENVIRONMENTS
from tests.local.conftest import Runner, mutated_assembly
from tools.local.cfn import Environment
from tools.local.smoke import CHECKS
from tools.local.template import read_task

# --------------------------------------------------------------------------- mutated templates


def _methods(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"]["Integration"] for r in template.get("Resources", {}).values() if r["Type"] == "AWS::ApiGateway::Method"]


def strip_stage_by_mapping(stack: str, template: dict[str, Any]) -> None:
    """The stage removed by parameter mapping, as AWS documents for private integrations: every
    integration URI path made of placeholders, each mapped to a static segment."""
    for integration in _methods(template):
        join = integration["Uri"]["Fn::Join"][1]
        port, path = re.match(r"^(:\d+)?(/.*)$", join[-1]).groups()  # type: ignore[union-attr]
        params = integration.setdefault("RequestParameters", {})
        segments = [s for s in path.split("/") if s and not s.startswith("{")]
        if not any(k.startswith("integration.request.path.") for k in params):
            for i, seg in enumerate(segments):
                params[f"integration.request.path.s{i}"] = f"'{seg}'"
            join[-1] = (port or "") + "".join(f"/{{s{i}}}" for i in range(len(segments)))


GATEWAY_PREFIX_SETTING = "GATEWAY_PATH_PREFIX"
"""The gateway's own tolerance of the stage prefix (issue 11 point 2, branch h-gateway), where present."""


def keep_stage(stack: str, template: dict[str, Any]) -> None:
    """Broken: no path mapping, so the backend receives /<stage>/v1/..., and no gateway setting that
    would strip it there."""
    for res in template.get("Resources", {}).values():
        if res["Type"] == "AWS::ECS::TaskDefinition":
            for c in res["Properties"]["ContainerDefinitions"]:
                c["Environment"] = [e for e in c.get("Environment", []) if e["Name"] != GATEWAY_PREFIX_SETTING]
    for integration in _methods(template):
        params = integration.get("RequestParameters", {})
        mapped = {k: v.strip("'") for k, v in params.items() if k.startswith("integration.request.path.")}
        if mapped:
            join = integration["Uri"]["Fn::Join"][1]
            port = re.match(r"^(:\d+)?", join[-1]).group(1) or ""  # type: ignore[union-attr]
            path = re.sub(r"\{(\w+)\+?\}", lambda m: mapped[f"integration.request.path.{m.group(1)}"], join[-1][len(port):])
            join[-1] = port + path
            for k in mapped:
                del params[k]


def client_authorization(stack: str, template: dict[str, Any]) -> None:
    """Broken: the client's Authorization reaches the gateway instead of the front door's key."""
    for integration in _methods(template):
        integration.get("RequestParameters", {}).pop("integration.request.header.Authorization", None)


def no_tool_parser(stack: str, template: dict[str, Any]) -> None:
    """Broken: vLLM without tool calling."""
    for res in template.get("Resources", {}).values():
        if res["Type"] == "AWS::ECS::TaskDefinition":
            for c in res["Properties"]["ContainerDefinitions"]:
                if c["Name"] == "vllm":
                    cmd = c["Command"]
                    i = cmd.index("--tool-call-parser")
                    del cmd[i : i + 2]
                    cmd.remove("--enable-auto-tool-choice")


@pytest.fixture(scope="module")
def served_dev(cdk_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev's templates with the stage removed by mapping (what the front door's fix synthesizes)."""
    return mutated_assembly(cdk_out, tmp_path_factory.mktemp("served") / "cdk.out", "dev", strip_stage_by_mapping)


SERVED_CHECKS = [n for n in CHECKS if n not in ("responses", "responses_stream", "llmhost_smoke")]


@pytest.mark.parametrize("name", SERVED_CHECKS)
def test_local_check_passes_once_the_stage_is_mapped_away(local_runner: Runner, served_dev: Path, name: str) -> None:
    outcome = local_runner.run(served_dev, "dev", SERVED_CHECKS)[name]
    assert outcome.ok, outcome.detail


def _assert_breaks(runner: Runner, base: Path, tmp_path: Path, mutation: Any, failing: dict[str, str]) -> None:
    broken = mutated_assembly(base, tmp_path / "cdk.out", "dev", mutation)
    results = runner.run(broken, "dev", [*failing, "wrong_key"])
    assert results["wrong_key"].ok, results["wrong_key"].detail  # the front door itself still answers
    for name, status in failing.items():
        assert not results[name].ok and status in results[name].detail, (name, results[name].detail)


@pytest.mark.parametrize(
    "mutation,failing",
    [
        (keep_stage, {"models": "404", "chat": "404", "tool_named": "404"}),
        (client_authorization, {"models": "401", "chat": "401", "chat_stream": "401"}),
    ],
    ids=["stage-not-stripped", "wrong-authorization-mapping"],
)
def test_broken_template_fails_local_check(
    local_runner: Runner, served_dev: Path, tmp_path: Path, mutation: Any, failing: dict[str, str]
) -> None:
    _assert_breaks(local_runner, served_dev, tmp_path, mutation, failing)


# Every environment as synthesized (after the dev variants above, so the dev engine is reused; prod and
# staging share one vLLM command line, so one engine serves both).
@pytest.mark.parametrize("env,name", [(env, name) for env in ENVIRONMENTS for name in CHECKS])
def test_local_check(local_runner: Runner, cdk_out: Path, env: str, name: str) -> None:
    outcome = local_runner.run(cdk_out, env)[name]
    assert outcome.ok, outcome.detail
    assert outcome.seconds < 60, f"{name} took {outcome.seconds:.0f} s"



def test_environments_with_the_same_vllm_command_share_one_engine(local_runner: Runner, cdk_out: Path) -> None:
    """Consecutive environments whose vLLM command lines are equal ran on one engine; the others did not."""
    commands = {env: read_task(Environment.load(cdk_out, env), cdk_out).vllm.command for env in ENVIRONMENTS}
    pids = {env: local_runner.engine_pids[(str(cdk_out), env)] for env in ENVIRONMENTS}
    for before, after in zip(ENVIRONMENTS, ENVIRONMENTS[1:]):
        assert (pids[before] == pids[after]) == (commands[before] == commands[after]), (before, after, pids)
    # one engine per run of equal command lines, whatever environments config/ holds
    assert len(set(pids.values())) == 1 + sum(commands[a] != commands[b] for a, b in zip(ENVIRONMENTS, ENVIRONMENTS[1:]))


def test_template_without_tool_parser_fails_local_check(local_runner: Runner, served_dev: Path, tmp_path: Path) -> None:
    """Last: vLLM without tool calling is another command line, so another engine."""
    _assert_breaks(local_runner, served_dev, tmp_path, no_tool_parser, {"tool_auto": "400", "tool_auto_stream": "400"})
