"""The construct library as another team gets it: the built wheel, installed into a new virtualenv
outside this repository, synthesizes both example apps (constructs/examples) with the real CDK CLI,
no AWS credentials and no cdk.context.json.

The virtualenv is a real fresh one (no --system-site-packages: a dependency the wheel forgets to
declare fails here). Versions are held to what this repository pins (`pip freeze` of .venv as
constraints), which also keeps the install inside the warm pip cache. Measured on the 2-core dev
machine: wheel build ~5 s, venv + install ~60-90 s, each example's synth 30-70 s (under load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.cfn import CDK_ENV, ROOT

EXAMPLES = ROOT / "constructs" / "examples"
PACKAGE = "llm_hosting_constructs"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         str(ROOT / "constructs")],
        check=True,
    )  # fmt: skip
    (built,) = out.glob("llm_hosting_constructs-*.whl")
    return built


def test_wheel_carries_what_the_constructs_need(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = f"{PACKAGE}/_assets"
    for path in (
        f"{PACKAGE}/gpu_cluster.py",
        f"{PACKAGE}/py.typed",
        f"{PACKAGE}/sizing/models.json",
        f"{PACKAGE}/sizing/instances.json",
        f"{assets}/gateway/Dockerfile",
        f"{assets}/gateway/.dockerignore",
        f"{assets}/gateway/requirements.txt",
        f"{assets}/gateway/app/core/contract.py",
        f"{assets}/gateway/app/main.py",
        f"{assets}/prewarm/prewarm.py",
    ):
        assert path in names, path
    # The same files as in the repository, and nothing of the app or of a test run.
    source = sorted(p.relative_to(ROOT / "containers").as_posix() for p in (ROOT / "containers/gateway/app").rglob("*.py"))
    shipped = sorted(n.removeprefix(f"{assets}/") for n in names if n.startswith(f"{assets}/gateway/app/"))
    assert shipped == source
    with zipfile.ZipFile(wheel) as z:
        assert z.read(f"{assets}/prewarm/prewarm.py") == (ROOT / "containers/prewarm/prewarm.py").read_bytes()
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("constructs/", "stacks/", "config/", "tests/")) for n in names)


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean-venv")
    assert not root.is_relative_to(ROOT)
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    constraints = root / "constraints.txt"
    constraints.write_text("".join(line + "\n" for line in frozen.splitlines() if "==" in line))
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        # --no-compile: byte-compiling aws-cdk-lib's large modules is most of an install's time.
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", "-c",
         str(constraints), f"{wheel}[sagemaker]"],
        check=True, cwd=root, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    print(f"fresh virtualenv with the wheel: {time.monotonic() - started:.0f} s")
    return root / "venv"


def clean_env(home: Path) -> dict[str, str]:
    """No AWS credentials or config anywhere, no metadata service, nothing of this repo on PYTHONPATH."""
    env = {k: v for k, v in CDK_ENV.items() if not k.startswith(("AWS_", "CDK_CONTEXT")) and k != "PYTHONPATH"}
    env.update(
        HOME=str(home),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
    )
    return env


def test_the_installed_package_is_the_wheel_not_this_checkout(venv: Path, tmp_path: Path) -> None:
    code = ("import llm_hosting_constructs.gateway as g, llm_hosting_constructs.assets as a;"
            "print(a.gateway_dir()); print(g.contract.__file__)")  # fmt: skip
    out = subprocess.run([str(venv / "bin/python"), "-c", code], cwd=tmp_path, env=clean_env(tmp_path),
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    for path in out:
        assert Path(path).is_relative_to(venv) and "site-packages" in path, path


@pytest.mark.parametrize("example,stack", [("ecs_serving", "LlmServing"), ("sagemaker_endpoint", "LlmSageMaker")])
def test_example_app_synthesizes_from_the_wheel(venv: Path, tmp_path: Path, example: str, stack: str) -> None:
    app = tmp_path / example
    shutil.copytree(EXAMPLES / example, app)
    out = tmp_path / "cdk.out"
    started = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "node_modules/.bin/cdk"), "synth", "--quiet", "--app", f"{venv / 'bin/python'} app.py", "-o", str(out)],
        cwd=app, env=clean_env(tmp_path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(f"{example}: cdk synth {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert "missing" not in manifest, manifest["missing"]  # nothing to look up
    assert not (app / "cdk.context.json").exists()
    template = json.loads((out / f"{stack}.template.json").read_text())
    types = {r["Type"] for r in template["Resources"].values()}
    if example == "ecs_serving":
        assert {"AWS::ECS::Service", "AWS::ECS::TaskDefinition", "AWS::AutoScaling::AutoScalingGroup",
                "AWS::EFS::FileSystem", "AWS::ElasticLoadBalancingV2::LoadBalancer"} <= types  # fmt: skip
        # The gateway image is staged from the wheel's copy of the gateway source.
        (staged,) = [p for p in out.glob("asset.*") if (p / "Dockerfile").is_file()]
        assert (staged / "app/core/contract.py").read_bytes() == (ROOT / "containers/gateway/app/core/contract.py").read_bytes()
        tasks = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
        scripts = [c.get("Command", [""])[0] for t in tasks for c in t["Properties"]["ContainerDefinitions"]]
        assert (ROOT / "containers/prewarm/prewarm.py").read_text() in scripts
    else:
        assert {"AWS::SageMaker::Model", "AWS::SageMaker::Endpoint", "AWS::ApplicationAutoScaling::ScalableTarget"} <= types
        (model,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Model"]
        image = model["Properties"]["PrimaryContainer"]["Image"]
        assert image.startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-vllm:0.29.0-")


LOOKUP_APP = """
import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from llm_hosting_constructs.gpu_cluster import GpuCluster

app = cdk.App()
stack = cdk.Stack(app, "Lookup", env=cdk.Environment(account="123456789012", region="eu-west-1"))
vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["eu-west-1a"],
                                  private_subnet_ids=["subnet-0123456789abcdef0"])
GpuCluster(stack, "Gpu", vpc=vpc, subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
           instance_type="g6e.xlarge", max_instances=1)
app.synth()
"""


def test_gpu_ami_lookup_without_credentials_is_one_line_naming_key_and_command(venv: Path, tmp_path: Path) -> None:
    """The default AMI lookup, in an app with an env and no credentials: the CLI's lookup fails, hands the
    error back to the app, and GpuCluster turns it into one line (was: "Need to perform AWS calls ...")."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(LOOKUP_APP)
    result = subprocess.run(
        [str(ROOT / "node_modules/.bin/cdk"), "synth", "--quiet", "--app", f"{venv / 'bin/python'} app.py",
         "-o", str(tmp_path / "cdk.out")],
        cwd=app, env=clean_env(tmp_path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    key = "ssm:account=123456789012:parameterName=/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id:region=eu-west-1"
    (line,) = [x for x in output.splitlines() if "GpuCluster:" in x]
    # The CLI prints it as `ERROR GpuCluster: ... (Construct Annotations)` (aws-cdk 2.1148).
    assert "GpuCluster: the GPU AMI lookup failed (Need to perform AWS calls for account 123456789012" in line
    assert f"context key {key!r} is not set" in line and "npx cdk synth" in line and "machine_image" in line
    assert not (app / "cdk.context.json").exists() or key not in (app / "cdk.context.json").read_text()
