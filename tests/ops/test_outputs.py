"""The stack naming rule and output keys that the stacks and ``llmhost`` share."""

import re

import pytest

from llmhost import outputs


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

    code = "import sys, llmhost.outputs; print('aws_cdk' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_the_construct_library_does_not_know_the_app() -> None:
    """Stack names, output keys and the front door's key id are the app's (issue 14): not in the library."""
    import importlib.util

    from tests.cfn import ROOT

    assert importlib.util.find_spec("llm_hosting_constructs.outputs") is None
    library = "\n".join(p.read_text() for p in (ROOT / "constructs/src").rglob("*.py"))
    for name in ("FRONTDOOR_KEY_ID", "frontdoor", "OUTPUT_STACK", "stack_name("):
        assert name not in library, name
