"""app.serving_settings: the gateway's settings that come from config (issue 11.2's path prefix,
issue 13's tenants and shutdown budget), checked on the props, not on a template."""

from __future__ import annotations

import json

from app import FRONTDOOR_KEY_ID, serving_settings
from config.schema import CONFIG_DIR, load_environment
from containers.gateway.app.core import contract
from containers.gateway.app.core.config import Settings

DEV = load_environment(CONFIG_DIR / "dev.yaml")


def test_gateway_gets_the_stage_prefix_tenants_and_a_drain_inside_the_stop_timeout() -> None:
    assert DEV.api is not None
    tenants = [t.model_copy(update={"tokens_per_minute": 5000 if i == 0 else None}) for i, t in enumerate(DEV.api.tenants)]
    cfg = DEV.model_copy(update={"api": DEV.api.model_copy(update={"tenants": tenants})})
    s = serving_settings(cfg)
    env = s.gateway_environment
    assert env[contract.ENV_PATH_PREFIX] == f"/{cfg.name}"  # build_api's stage name
    assert env[contract.ENV_FRONTDOOR_KEY_ID] == FRONTDOOR_KEY_ID
    assert env[contract.ENV_TENANT_NAMES_PARAMETER] == f"/llm-hosting/{cfg.name}/tenant-api-keys"
    assert json.loads(env[contract.ENV_TENANT_TOKENS_PER_MINUTE]) == {tenants[0].name: 5000}
    assert int(env[contract.ENV_DRAIN_TIMEOUT_S]) + contract.SHUTDOWN_TAIL_S <= s.stop_timeout_seconds - 10
    # the gateway accepts what the stack sets
    gw = Settings(**{k[len(contract.ENV_PREFIX):].lower(): v for k, v in env.items()})
    assert gw.path_prefix == f"/{cfg.name}" and gw.tenant_tokens_per_minute == {tenants[0].name: 5000}
