"""SSM parameter names the stacks write and read (llmhost.parameters)."""

from __future__ import annotations

import re

import pytest

from llmhost import outputs, parameters


def test_names_are_per_environment_and_writing_stack() -> None:
    assert parameters.name("dev", parameters.ALB_ARN) == "/llm-hosting/dev/serving/alb-arn"
    assert parameters.name("prod", parameters.REST_API_ID) == "/llm-hosting/prod/api/rest-api-id"


def test_every_key_has_a_writer_and_a_valid_ssm_name() -> None:
    names = set(vars(parameters)) - set(vars(outputs)) - {"ROOT"}
    keys = [v for k, v in vars(parameters).items() if k in names and k.isupper() and isinstance(v, str)]
    assert sorted(keys) == sorted(parameters.WRITER)
    assert set(parameters.WRITER.values()) <= set(outputs.STACKS)
    for key in keys:
        # SSM: letters, digits and . - _ / ; a hierarchy of at most 15 levels.
        assert re.fullmatch(r"(/[A-Za-z0-9._-]+){4}", parameters.name("staging", key))


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'alb'"):
        parameters.name("dev", "alb")
