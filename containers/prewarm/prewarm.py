"""Download one pinned model revision into the Hugging Face cache on EFS (HF_HOME).

Runs inside the pinned vLLM image (which ships ``huggingface_hub``), so the files land
exactly where and how vLLM will look for them: ``$HF_HOME/hub/models--org--name/snapshots/<sha>``.
The serving stack passes this file's text as ``python3 -c`` at synth, so there is no
image to build. Settings come from the environment:

    MODEL_ID         e.g. meta-llama/Llama-3.1-8B-Instruct
    MODEL_REVISION   the 40-character commit sha (never a branch)
    HF_TOKEN         from Secrets Manager (gated models)
    HF_HOME          the EFS mount
    MODEL_S3_URI     optional s3://bucket/prefix/ holding that revision's files (a VPC without
                     internet egress): copied from S3 (boto3, through the S3 gateway endpoint)
                     instead of the Hub, into the same snapshot directory

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


def snapshot_dir(hf_home: str, model_id: str, revision: str) -> str:
    """Where huggingface_hub (and so vLLM, offline) looks for ``model_id`` at ``revision``."""
    return os.path.join(hf_home, "hub", "models--" + model_id.replace("/", "--"), "snapshots", revision)


def from_s3(uri: str, model_id: str, revision: str) -> int:
    import boto3  # in the vLLM image (its S3 model loader depends on it)

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    sizes = {
        obj["Key"]: obj.get("Size")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if not obj["Key"].endswith("/")
    }
    keys = list(sizes)
    files = [k[len(prefix):] for k in keys]
    patterns = ignore_patterns(files)
    weights = weight_files(files, patterns)
    if "config.json" not in files or not weights:
        print(f"{uri}: no config.json or no weight files to serve", file=sys.stderr)
        return 3
    target = snapshot_dir(os.environ["HF_HOME"], model_id, revision)
    started, size = time.monotonic(), 0
    for key, rel in zip(keys, files):
        if any(fnmatch.fnmatch(rel, p) for p in patterns):
            continue
        path = os.path.join(target, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not (os.path.exists(path) and os.path.getsize(path) == sizes[key]):  # idempotent, like the Hub path
            s3.download_file(bucket, key, path)
        size += os.path.getsize(path)
    print(
        f"pre-warmed {model_id}@{revision} from {uri}: {len(weights)} weight files, {size / 2**30:.1f} GiB "
        f"in {time.monotonic() - started:.0f} s at {target}"
    )
    return 0


def main() -> int:
    model_id, revision = os.environ["MODEL_ID"], os.environ["MODEL_REVISION"]
    if len(revision) != 40:
        print(f"MODEL_REVISION must be a 40-character commit sha, got {revision!r}", file=sys.stderr)
        return 2
    if os.environ.get("MODEL_S3_URI"):
        return from_s3(os.environ["MODEL_S3_URI"], model_id, revision)

    from huggingface_hub import HfApi, snapshot_download
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
