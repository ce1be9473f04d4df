"""Download one pinned model revision into the Hugging Face cache on EFS (HF_HOME).

Runs inside the pinned vLLM image (which ships ``huggingface_hub``), so the files land
exactly where and how vLLM will look for them: ``$HF_HOME/hub/models--org--name/snapshots/<sha>``.
The serving stack passes this file's text as ``python3 -c`` at synth, so there is no
image to build. Settings come from the environment:

    MODEL_ID         e.g. meta-llama/Llama-3.1-8B-Instruct
    MODEL_REVISION   the 40-character commit sha (never a branch)
    HF_TOKEN         from Secrets Manager (gated models)
    HF_HOME          the EFS mount

Only what vLLM loads is fetched: safetensors weights when the repo has them (else .bin),
configs and tokenizer files; never the duplicate ``original/`` checkpoints, GGUF/ONNX
exports or other frameworks' weights. Idempotent: files already in the cache are skipped.
Exit status 0 only when the snapshot has a config.json and at least one weight file.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time

SKIP_ALWAYS = ("original/*", "*.pth", "*.gguf", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.ot", "*.tflite")


def ignore_patterns(files: list[str]) -> list[str]:
    """Patterns to skip for a repo with these files: .bin weights only when safetensors exist."""
    patterns = list(SKIP_ALWAYS)
    if any(f.endswith(".safetensors") for f in files):
        patterns.append("*.bin")
    return patterns


def weight_files(files: list[str], patterns: list[str]) -> list[str]:
    kept = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    return [f for f in kept if f.endswith((".safetensors", ".bin"))]


def main() -> int:
    from huggingface_hub import HfApi, snapshot_download

    model_id, revision = os.environ["MODEL_ID"], os.environ["MODEL_REVISION"]
    if len(revision) != 40:
        print(f"MODEL_REVISION must be a 40-character commit sha, got {revision!r}", file=sys.stderr)
        return 2
    token = os.environ.get("HF_TOKEN") or None
    files = HfApi().list_repo_files(model_id, revision=revision, token=token)
    patterns = ignore_patterns(files)
    weights = weight_files(files, patterns)
    if "config.json" not in files or not weights:
        print(f"{model_id}@{revision}: no config.json or no weight files to serve", file=sys.stderr)
        return 3
    started = time.monotonic()
    path = snapshot_download(
        repo_id=model_id, revision=revision, token=token, ignore_patterns=patterns, max_workers=16
    )
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    print(
        f"pre-warmed {model_id}@{revision}: {len(weights)} weight files, {size / 2**30:.1f} GiB "
        f"in {time.monotonic() - started:.0f} s at {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
