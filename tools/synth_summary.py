"""Print a short per-environment summary of a cloud assembly: stacks and their resources."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def stack_templates(outdir: Path) -> dict[str, dict[str, dict]]:
    """{environment: {stack name: template}} for every nested stage assembly in `outdir`."""
    envs: dict[str, dict[str, dict]] = {}
    for assembly in sorted(outdir.glob("assembly-*")):
        manifest = json.loads((assembly / "manifest.json").read_text())
        stacks = {}
        for artifact in manifest["artifacts"].values():
            if artifact["type"] == "aws:cloudformation:stack":
                name = artifact["properties"].get("stackName") or artifact["displayName"]
                template_file = assembly / artifact["properties"]["templateFile"]
                stacks[name] = json.loads(template_file.read_text())
        envs[assembly.name.removeprefix("assembly-")] = dict(sorted(stacks.items()))
    return envs


def summary(outdir: Path) -> str:
    lines = []
    for env, stacks in stack_templates(outdir).items():
        total = sum(len(t.get("Resources", {})) for t in stacks.values())
        lines.append(f"{env}: {len(stacks)} stacks, {total} resources")
        for name, template in stacks.items():
            types = Counter(r["Type"].removeprefix("AWS::") for r in template.get("Resources", {}).values())
            top = ", ".join(f"{n} {t}" for t, n in types.most_common(4))
            lines.append(f"  {name:<24} {len(template.get('Resources', {})):>4} resources  ({top})")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")))
