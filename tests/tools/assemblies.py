"""Write minimal cloud assemblies (manifest.json + templates) for tests of tools/lifecycle.py."""

from __future__ import annotations

import json
from pathlib import Path


def write_assembly(outdir: Path, env: str, stacks: dict[str, dict], deps: dict[str, list[str]] | None = None) -> Path:
    """`outdir/assembly-<env>` holding one stack per {stack name: template}; returns `outdir`."""
    assembly = outdir / f"assembly-{env}"
    assembly.mkdir(parents=True)
    artifacts = {}
    for name, template in stacks.items():
        (assembly / f"{name}.template.json").write_text(json.dumps(template))
        artifacts[name] = {
            "type": "aws:cloudformation:stack",
            "environment": "aws://111111111111/us-east-1",
            "displayName": name.replace("-", "/", 1),
            "dependencies": [*(deps or {}).get(name, []), f"{name}.assets"],
            "properties": {"templateFile": f"{name}.template.json", "stackName": name, "terminationProtection": name.endswith("-cache")},
        }
    (assembly / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    return outdir
