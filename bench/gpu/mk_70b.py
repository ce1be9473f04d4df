"""A Llama-3.1-70B-shaped model directory in fp8 for vLLM --load-format dummy.

The config declares an fp8 checkpoint (`quantization_config.quant_method = fp8`), so vLLM creates
the linear weights directly in fp8 (about 70 GB for 70B parameters) instead of loading bf16 and
quantizing online, which would need 140 GB first. Tokenizer files come from the 8B directory that
`shared/gpu/mk_model.py` wrote (same 128,256-token synthetic vocabulary).

    PYTHONPATH=/root/site python3 bench/gpu/mk_70b.py /root/m8b /root/m70b
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.name != "config.json":
        shutil.copy(f, out / f.name)
cfg = json.loads((src / "config.json").read_text())
cfg.update(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    head_dim=128,
    quantization_config={"quant_method": "fp8", "activation_scheme": "dynamic"},
)
(out / "config.json").write_text(json.dumps(cfg, indent=1))
print("model dir", out, sorted(p.name for p in out.iterdir()))
