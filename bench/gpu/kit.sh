#!/bin/bash
# Build the kit that run.sh's `start` step installs on a GPU host (see README.md):
#   bash bench/gpu/kit.sh DEST [OLD_COMMIT]
# DEST/repo: bench/gpu, the fake upstream and containers/gateway as committed at HEAD (commit first:
# the kit measures what the commit ships); DEST/whl: the gateway's pinned wheels for CPython 3.12
# (the host's Python), httptools among them (it also goes to vLLM's side), and granian's for its
# floor; DEST/gw-old: the gateway at OLD_COMMIT, one more target of the one-token calls;
# DEST/start-vllm.sh, mk_model.py from ../shared/gpu. Run in the repository root of the worktree to measure.
set -euo pipefail
dest=$1; old=${2:-}
shared=$(git rev-parse --show-toplevel)/../shared/gpu
[ -d "$shared" ] || shared=/work/shared/gpu
rm -rf "$dest"; mkdir -p "$dest/repo" "$dest/whl"
git archive HEAD bench/gpu bench/gateway/fake_upstream.py containers/gateway | tar x -C "$dest/repo"
if [ -n "$old" ]; then
  mkdir -p "$dest/gw-old" && git archive "$old" containers/gateway | tar x -C "$dest/gw-old" --strip-components=2
fi
cp bench/gpu/run.sh "$dest/gpu.sh"; cp "$shared/start-vllm.sh" "$shared/mk_model.py" "$dest/"
# boto3 and its dependencies stay behind: the gateway imports boto3 only where a tenant-names SSM
# parameter is configured, and they are a third of the kit's size.
grep -vE '^(boto3|botocore|s3transfer|jmespath|urllib3|python-dateutil|six)==' containers/gateway/requirements.txt > "$dest/requirements.txt"
grep -oE '^granian==[^ ]+' requirements-dev.txt >> "$dest/requirements.txt"  # floor_hops.py's granian floor
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any -d "$dest/whl" -r "$dest/requirements.txt"
du -sh "$dest"
