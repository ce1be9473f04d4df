from __future__ import annotations

import pytest
from pydantic import ValidationError

from containers.gateway.app.core.config import Settings


def test_api_keys_json_object_list_and_comma_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", '{"team-a": "k1", "team-b": "k2"}')
    s = Settings()
    assert {k: v.get_secret_value() for k, v in s.api_keys.items()} == {"team-a": "k1", "team-b": "k2"}
    assert "k1" not in repr(s)  # secrets stay out of reprs and logs
    monkeypatch.setenv("GATEWAY_API_KEYS", '["k1", "k2"]')
    assert sorted(v.get_secret_value() for v in Settings().api_keys.values()) == ["k1", "k2"]
    monkeypatch.setenv("GATEWAY_API_KEYS", "k1, k2")
    keys = Settings().api_keys
    assert sorted(v.get_secret_value() for v in keys.values()) == ["k1", "k2"]
    assert all(kid.startswith("key-") for kid in keys)
    monkeypatch.setenv("GATEWAY_API_KEYS", "")
    assert not Settings().auth_enabled


def test_upstream_url_normalised_and_checked() -> None:
    assert Settings(upstream_url="http://127.0.0.1:8000/v1/").upstream_url == "http://127.0.0.1:8000"
    with pytest.raises(ValidationError, match="http"):
        Settings(upstream_url="127.0.0.1:8000")


def test_upstream_keepalive_must_stay_below_vllms() -> None:
    with pytest.raises(ValidationError, match="vLLM"):
        Settings(upstream_keepalive_s=5)
    assert Settings(upstream_keepalive_s=4.5).upstream_keepalive_s == 4.5


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WORKERS", "3")
    monkeypatch.setenv("GATEWAY_LOG_PROMPTS", "true")
    s = Settings()
    assert s.workers == 3 and s.log_prompts is True
    assert Settings.model_fields["log_prompts"].default is False


def test_path_prefix_and_tenant_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().path_prefix == ""
    assert Settings(path_prefix="/prod/").path_prefix == "/prod"
    for bad in ("prod", "/prod//x", "/pr od"):
        with pytest.raises(ValidationError, match="path_prefix"):
            Settings(path_prefix=bad)
    monkeypatch.setenv("GATEWAY_TENANT_TOKENS_PER_MINUTE", '{"team-a": 1000}')
    monkeypatch.setenv("GATEWAY_TENANT_NAMES", '{"k1a2b3": "team-a"}')
    s = Settings()
    assert s.tenant_tokens_per_minute == {"team-a": 1000} and s.tenant_names == {"k1a2b3": "team-a"}
    with pytest.raises(ValidationError, match="team-b"):
        Settings(tenant_tokens_per_minute={"team-b": 0})
