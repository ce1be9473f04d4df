"""`make diff BASE=<git ref>`: what deploying this working tree over BASE would do, offline.

Synthesizes BASE (its tree from `git archive`, with this checkout's .venv and node_modules linked
in) and the working tree, then prints per environment and stack the resources added (+), removed
(-), updated in place (~) and replaced (!, with the create-only property that forces it), and the
findings that fail a deploy or lose data. Exit status: 0 clean, 1 when a stateful resource would be
replaced or an export another stack imports would change (tools/lifecycle.py has the rules), 2 when
a synth fails. `--before DIR --after DIR` compares two cloud assemblies already synthesized.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tools.lifecycle import ROOT, SynthError, diff_assemblies, export_ref, load_assembly, render, synth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make diff", description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="git ref to compare the working tree with (e.g. origin/main, HEAD~1)")
    parser.add_argument("--before", type=Path, help="a synthesized cloud assembly (instead of --base)")
    parser.add_argument("--after", type=Path, help="with --before: the other assembly (default: synth the working tree)")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to compare (default: this one)")
    args = parser.parse_args(argv)
    if (args.base is None) == (args.before is None):
        parser.error("give --base REF or --before DIR")
    with tempfile.TemporaryDirectory(prefix="llmh-diff-") as tmp:
        work = Path(tmp)
        try:
            before = args.before
            if before is None:
                export_ref(args.base, work / "base", repo=args.repo)
                before = work / "base.out"
                synth(work / "base", before, node_modules=args.repo / "node_modules")
            after = args.after
            if after is None:
                after = work / "head.out"
                synth(args.repo, after)
        except SynthError as exc:
            print(f"diff: {exc}", file=sys.stderr)
            return 2
        diffs = diff_assemblies(load_assembly(before), load_assembly(after))
    print(render(diffs))
    blocking = sum(len(d.blocking) for d in diffs)
    print(f"\n{blocking} blocking finding(s)" if blocking else "\nno blocking findings")
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main())
