from __future__ import annotations

from containers.gateway.app.core import contract
from tests.gateway.helpers import request


def test_health_live_metrics(gateway_server) -> None:  # type: ignore[no-untyped-def]
    st, _, out = request(gateway_server.base_url, "GET", contract.HEALTH_PATH)
    assert st == 200 and b'"ok"' in out
    assert request(gateway_server.base_url, "GET", contract.LIVE_PATH)[0] == 200
    st, h, out = request(gateway_server.base_url, "GET", contract.METRICS_PATH)
    assert st == 200 and h["content-type"].startswith("text/plain")
    assert b"gateway_requests_total" in out and b"gateway_in_flight_requests" in out


def test_unknown_route_and_method_use_openai_errors(gateway_server) -> None:  # type: ignore[no-untyped-def]
    st, _, out = request(gateway_server.base_url, "GET", "/v2/nothing")
    assert st == 404 and b'"error"' in out
    st, _, out = request(gateway_server.base_url, "GET", "/v1/chat/completions", key=gateway_server.api_key)
    assert st == 405 and b'"type":"invalid_request_error"' in out


def test_openapi_lists_every_route(gateway_server) -> None:  # type: ignore[no-untyped-def]
    import json

    doc = json.loads(request(gateway_server.base_url, "GET", "/openapi.json")[2])
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/chat", "/v1/chat/stream", "/health", "/live", "/metrics"):
        assert path in doc["paths"], path
