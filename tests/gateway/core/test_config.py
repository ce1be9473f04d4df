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
