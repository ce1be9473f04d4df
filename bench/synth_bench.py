"""Time a full synth of every environment (the real CLI, cdk-nag included), warm, several runs.

Usage: `make bench-synth` (RUNS=5 by default). Prints a table; target: median <= 10 s on 2 cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 10.0
ENV = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_VERSION_CHECK": "1"}


def timed(cmd: list[str], outdir: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env={**ENV, "CDK_OUTDIR": outdir}, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    runs = int(os.environ.get("RUNS", "5"))
    cli = [str(ROOT / "node_modules/.bin/cdk"), "synth", "--quiet"]
    app_only = [sys.executable, "app.py"]
    with tempfile.TemporaryDirectory() as tmp:
        timed(cli + ["-o", tmp], tmp)  # warm-up: page cache, jsii bundle, __pycache__
        rows = []
        for label, cmd in (("cdk synth (CLI + app)", cli), ("python app.py (app only)", app_only)):
            samples = [timed(cmd + (["-o", tmp] if cmd is cli else []), tmp) for _ in range(runs)]
            rows.append((label, statistics.median(samples), min(samples), max(samples)))
    print(f"{'what':<28} {'median s':>9} {'min s':>7} {'max s':>7}   ({runs} warm runs, {os.cpu_count()} cores)")
    for label, med, lo, hi in rows:
        print(f"{label:<28} {med:>9.2f} {lo:>7.2f} {hi:>7.2f}")
    verdict = "meets" if rows[0][1] <= TARGET_S else "MISSES"
    print(f"full synth median {rows[0][1]:.2f} s {verdict} the {TARGET_S:.0f} s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
