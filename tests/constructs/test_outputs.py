"""The stack naming rule and output keys that the stacks and ``llmhost`` share."""

import re

import pytest

from llm_hosting_constructs import outputs


def test_stack_name_is_env_dash_stack() -> None:
    assert outputs.stack_name("dev", outputs.SERVING) == "dev-serving"
    assert outputs.stack_name("prod", outputs.MODEL_CACHE) == "prod-model-cache"


def test_stack_name_rejects_unknown_stack() -> None:
    with pytest.raises(ValueError, match="unknown stack 'servng'"):
        outputs.stack_name("dev", "servng")


def test_every_output_key_is_a_valid_unique_cfn_output_id_with_a_known_stack() -> None:
    keys = [v for k, v in vars(outputs).items() if k.isupper() and isinstance(v, str) and v not in outputs.STACKS]
    assert len(keys) == len(set(keys)), "two constants share one output key"
    # CloudFormation output logical IDs: alphanumeric only, at most 255 characters.
    assert all(re.fullmatch(r"[A-Za-z0-9]{1,255}", k) for k in keys)
    assert set(keys) == set(outputs.OUTPUT_STACK)
    assert set(outputs.OUTPUT_STACK.values()) <= set(outputs.STACKS)


def test_outputs_module_does_not_import_aws_cdk() -> None:
    import subprocess
    import sys

    code = "import sys, llm_hosting_constructs.outputs; print('aws_cdk' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
