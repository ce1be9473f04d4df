"""The edge middleware: the configured path prefix (issue 11.2) and the declared body size."""

from __future__ import annotations

import json

from tests.gateway.helpers import error_of, request

MSG = [{"role": "user", "content": "hi"}]


def test_path_prefix_is_tolerated_when_configured(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """API Gateway's private integration sends the stage in front of the path ("/prod/v1/...");
    with GATEWAY_PATH_PREFIX=/prod both forms serve; without it the prefixed path is a 404."""
    fake = start_fake_upstream("--chunks", "2")
    plain = start_gateway(fake.base_url)
    prefixed = start_gateway(fake.base_url, path_prefix="/prod")
    body = {"model": "fake", "messages": MSG, "max_tokens": 2}
    for path in ("/prod/v1/chat/completions", "/v1/chat/completions"):
        st, _, out = request(prefixed.base_url, "POST", path, body)
        assert st == 200 and json.loads(out)["choices"][0]["message"]["content"] == "toktok", (path, out)
    assert request(prefixed.base_url, "GET", "/prod/v1/models")[0] == 200
    assert request(prefixed.base_url, "POST", "/prod/v1/chat", {"prompt": "hi", "max_tokens": 2})[0] == 200
    assert request(prefixed.base_url, "GET", "/prod/health")[0] == 200
    assert request(prefixed.base_url, "GET", "/production/v1/models")[0] == 404  # a prefix of the prefix is not it
    st, _, out = request(plain.base_url, "POST", "/prod/v1/chat/completions", body)
    assert st == 404 and error_of(out)["code"] == "not_found"
    assert request(plain.base_url, "POST", "/v1/chat/completions", body)[0] == 200
