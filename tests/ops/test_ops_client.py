"""Timing figures of a chat answer and SSE parsing, on constructed inputs."""

from __future__ import annotations

import pytest

from llmhost.cli import _stats
from llmhost.client import ChatResult, endpoint, sse_data


def _result(**kw: object) -> ChatResult:
    base: dict[str, object] = dict(
        text="x",
        streamed=True,
        total_s=2.0,
        ttft_s=0.5,
        last_token_s=1.5,
        completion_tokens=21,
        finish_reason="stop",
        saw_done=True,
    )
    base.update(kw)
    return ChatResult(**base)  # type: ignore[arg-type]


def test_decode_rate_counts_tokens_after_the_first() -> None:
    r = _result()
    assert r.decode_rate == pytest.approx(20 / 1.0)  # 20 tokens between 0.5 s and 1.5 s
    assert r.end_to_end_rate == pytest.approx(21 / 2.0)
    assert _stats(r) == "time to first token 0.500 s · 21 tokens in 2.00 s · 20.0 tokens/s after the first"


def test_a_burst_has_no_decode_rate() -> None:
    r = _result(ttft_s=0.5, last_token_s=0.51)
    assert r.decode_rate is None
    assert _stats(r).endswith("10.5 tokens/s end to end · tokens arrived in one burst")


def test_unstreamed_answer() -> None:
    r = _result(streamed=False, ttft_s=None, last_token_s=None, completion_tokens=8, total_s=0.5)
    assert r.decode_rate is None and r.end_to_end_rate == 16.0
    assert _stats(r) == "8 tokens in 0.50 s · 16.0 tokens/s end to end · use --stream for time to first token"
    assert (
        _stats(_result(streamed=False, ttft_s=None, completion_tokens=0))
        == "2.00 s · use --stream for time to first token"
    )


def test_sse_payloads_skip_comments_and_other_fields() -> None:
    stream = b': heartbeat\n\nevent: message\ndata: {"a":1}\r\n\ndata:[DONE]'
    assert list(sse_data([stream])) == ['{"a":1}', "[DONE]"]
    # The same stream cut into chunks at every possible place: lines are reassembled.
    for cut in range(1, len(stream)):
        assert list(sse_data([stream[:cut], stream[cut:]])) == ['{"a":1}', "[DONE]"], cut


def test_endpoint_joins_paths() -> None:
    ep = endpoint("https://x.execute-api.us-east-1.amazonaws.com/prod", "k")
    assert ep.url("v1/chat/completions") == "https://x.execute-api.us-east-1.amazonaws.com/prod/v1/chat/completions"
    assert ep.url("/health") == "https://x.execute-api.us-east-1.amazonaws.com/prod/health"
    assert ep.headers() == {"x-api-key": "k"}
    assert endpoint("http://h/", None).headers() == {}


def test_openai_style_base_url_is_the_api_root() -> None:
    """A base URL ending in /v1 (as the OpenAI SDK takes it) is not doubled: the paths carry v1/."""
    for url in ("http://h/v1", "http://h/v1/", "http://h", "http://h/"):
        assert endpoint(url, None).url("v1/models") == "http://h/v1/models", url
    assert endpoint("https://x/prod/v1", None).url("health") == "https://x/prod/health"


def test_health_path_is_the_gateways() -> None:
    from containers.gateway.app.core import contract

    from llmhost.client import HEALTH_PATH

    assert "/" + HEALTH_PATH == contract.HEALTH_PATH
