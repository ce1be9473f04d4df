"""The construct library has an import name of its own and does not shadow the CDK's `constructs`."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from tests.cfn import ROOT


def test_constructs_still_resolves_to_the_cdk_library() -> None:
    # Run from the repo root, where a folder named `constructs/` sits first on sys.path.
    code = "import constructs, sys; from constructs import Construct; print(constructs.__file__); print(Construct.__module__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path, module = out.split()
    assert "site-packages" in path and Path(path).parent.name == "constructs"
    assert module.startswith("constructs")


def test_library_is_an_installed_distribution() -> None:
    dist = importlib.metadata.distribution("llm-hosting-constructs")
    assert dist.metadata["Name"] == "llm-hosting-constructs"
    import llm_hosting_constructs

    assert Path(llm_hosting_constructs.__file__).is_relative_to(ROOT / "constructs" / "src")
