"""Prompt and completion text reach the log only when GATEWAY_LOG_PROMPTS is on."""

from __future__ import annotations

import json
import uuid

from tests.gateway.helpers import open_stream, request, sse_events, wait_until


def _records(gw) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return [json.loads(x) for x in gw.log.read_text().splitlines() if '"gateway.request"' in x]


def test_log_prompts_setting_turns_text_logging_on(start_fake_upstream, start_gateway) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_upstream("--chunks", "2")
    marker = f"prompt-{uuid.uuid4().hex}"
    body = {"model": "fake", "messages": [{"role": "user", "content": marker}], "max_tokens": 2}
    quiet = start_gateway(fake.base_url)
    loud = start_gateway(fake.base_url, log_prompts="true")
    for gw in (quiet, loud):
        assert request(gw.base_url, "POST", "/v1/chat/completions", body)[0] == 200
        c, r = open_stream(gw.base_url, "/v1/chat/completions", {**body, "stream": True})
        list(sse_events(r))
        c.close()
        assert wait_until(lambda gw=gw: len(_records(gw)) == 2, timeout=5)
    assert marker not in quiet.log.read_text() and "toktok" not in quiet.log.read_text()
    recs = _records(loud)
    assert all(marker in json.dumps(r["prompt"]) for r in recs)
    assert [r["completion"] for r in recs] == ["toktok", "toktok"]
