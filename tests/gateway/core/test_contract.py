"""The contract module is importable by the CDK stacks: standard library only, PEP 420
namespace import from the repository root, and it matches the gateway's settings."""

from __future__ import annotations

import subprocess
import sys

from containers.gateway.app.core import contract
from containers.gateway.app.core.config import Settings
from tests.fixtures.engine import REPO


def test_contract_imports_nothing_but_the_standard_library() -> None:
    code = (
        "import sys; import containers.gateway.app.core.contract as c; "
        "bad = [m for m in ('fastapi', 'pydantic', 'starlette', 'aiohttp', 'uvicorn', 'orjson') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_namespace_layout_has_no_package_markers_above_app() -> None:
    assert not (REPO / "containers" / "__init__.py").exists()
    assert not (REPO / "containers" / "gateway" / "__init__.py").exists()
    for init in (REPO / "containers/gateway/app/__init__.py", REPO / "containers/gateway/app/core/__init__.py"):
        assert "import" not in init.read_text()


def test_every_setting_has_an_env_constant_and_back() -> None:
    fields = {contract.ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert fields == set(contract.ALL_ENV_VARS)
    assert set(contract.SECRET_ENV_VARS) <= fields


def test_keepalive_chain() -> None:
    assert contract.DEFAULT_UPSTREAM_KEEPALIVE_S < contract.VLLM_KEEPALIVE_S
    for alb in (1, 60, 600, 4000):
        assert contract.server_keepalive_for_alb(alb) > alb
    assert Settings().keepalive_timeout_s > contract.DEFAULT_ALB_IDLE_TIMEOUT_S


def test_metrics_have_units_and_one_dimension_set() -> None:
    names = [v for k, v in vars(contract).items() if k.startswith("METRIC_") and k != "METRIC_UNITS"]
    assert len(names) == len(set(names))
    assert set(names) == set(contract.METRIC_UNITS)
    assert contract.EMF_DIMENSION_SETS == ((contract.DIMENSION_SERVICE, contract.DIMENSION_MODEL),)
    assert contract.GATEWAY_PORT == 8080
    assert (contract.HEALTH_PATH, contract.LIVE_PATH) == ("/health", "/live")
