"""SSM parameters through which a later stack reads an earlier one's names and ids, at deploy.

Instead of CloudFormation exports, which cannot change while another stack imports them
("Export ... cannot be updated as it is in use"): the writing stack keeps a String parameter up
to date, the reading stack declares it as an ``AWS::SSM::Parameter::Value<String>`` template
parameter, which CloudFormation resolves at every stack update, and the CDK CLI never skips a
stack that has one (docs/deploy-order.md). The stacks write and read through these names only.

Pure Python, like ``outputs``: tools import it without aws-cdk-lib.
"""

from __future__ import annotations

from typing import Final

from .outputs import API, MODEL_CACHE, SERVING, STACKS

ROOT: Final = "/llm-hosting"

# written by the model-cache stack
MODEL_CACHE_SECURITY_GROUP_ID: Final = "security-group-id"

# written by the serving stack
ALB_ARN: Final = "alb-arn"
ALB_DNS_NAME: Final = "alb-dns-name"
ALB_SECURITY_GROUP_ID: Final = "alb-security-group-id"
ALB_FULL_NAME: Final = "alb-full-name"
TARGET_GROUP_FULL_NAME: Final = "target-group-full-name"
FRONTDOOR_SECURITY_GROUP_ID: Final = "frontdoor-security-group-id"
ECS_CLUSTER_NAME: Final = "cluster-name"
ECS_SERVICE_NAME: Final = "service-name"
ASG_NAME: Final = "asg-name"
# written by the api stack
REST_API_ID: Final = "rest-api-id"

WRITER: Final[dict[str, str]] = {
    **{
        key: SERVING
        for key in (
            ALB_ARN, ALB_DNS_NAME, ALB_SECURITY_GROUP_ID, ALB_FULL_NAME, TARGET_GROUP_FULL_NAME,
            FRONTDOOR_SECURITY_GROUP_ID, ECS_CLUSTER_NAME, ECS_SERVICE_NAME, ASG_NAME,
        )
    },
    REST_API_ID: API,
    MODEL_CACHE_SECURITY_GROUP_ID: MODEL_CACHE,
}  # fmt: skip
"""Which stack writes each parameter."""


def name(env: str, key: str) -> str:
    """The parameter ``key`` of environment ``env``: ``/llm-hosting/dev/serving/alb-arn``."""
    if key not in WRITER:
        raise ValueError(f"unknown parameter {key!r}; expected one of {', '.join(WRITER)}")
    stack = WRITER[key]
    assert stack in STACKS
    return f"{ROOT}/{env}/{stack}/{key}"
