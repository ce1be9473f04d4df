"""Session-wide fixtures: one real `cdk synth` of every environment, shared by all infra tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cfn import cdk_synth
from tools.synth_summary import stack_templates

pytest_plugins = ["tests.fixtures.engine"]

# Every test that starts the vLLM CPU engine depends on this fixture (the engine, the gateway in front
# of it and the SDK client all do): such tests get the `vllm` marker, which `make test-infra` deselects.
ENGINE_FIXTURE = "tiny_model_dir"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("cdk.out")
    result = cdk_synth(outdir)
    assert result.returncode == 0, f"cdk synth failed:\n{result.stdout}\n{result.stderr}"
    return outdir


@pytest.fixture(scope="session")
def templates(cdk_out: Path) -> dict[str, dict[str, dict]]:
    """{env: {stack name: template dict}}, e.g. templates["prod"]["prod-network"]."""
    return stack_templates(cdk_out)
