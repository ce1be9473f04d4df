"""The tiny local model can take the tool-call path of every model family the catalog serves."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from llm_hosting_constructs.sizing import model_ids, tool_call_parser

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"

PROBE = """
import json, sys
from vllm.tool_parsers import ToolParserManager
from vllm.tokenizers import get_tokenizer
model, parsers = sys.argv[1], json.loads(sys.argv[2])
tok = get_tokenizer(model)
out = {}
for name in parsers:
    try:
        ToolParserManager.get_tool_parser(name)(tok)
        out[name] = "ok"
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}
text = tok.apply_chat_template(
    [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
     {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    tokenize=False, add_generation_prompt=True,
)
print("PROBE " + json.dumps({"parsers": out, "text": text}))
"""


@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="needs .venv-vllm (make install-test)")
def test_every_catalog_parser_starts_on_the_tiny_model_and_its_template_renders_tools(tiny_model_dir: Path) -> None:
    parsers = sorted({p for m in model_ids() if (p := tool_call_parser(m))})
    assert parsers == ["hermes", "llama3_json", "mistral"]  # vLLM's Tool Calling page: Llama 3.x, Qwen2.5, Mistral v0.3
    result = subprocess.run(
        [str(VLLM_PYTHON), "-c", PROBE, str(tiny_model_dir), json.dumps(parsers)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.split("PROBE ", 1)[1])
    assert probe["parsers"] == dict.fromkeys(parsers, "ok")
    text = probe["text"]
    assert '"name": "get_weather"' in text and "<tool_call>" in text and "<|tool|>\nsunny" in text
    assert text.endswith("<|assistant|>\n")
