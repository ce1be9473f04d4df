"""Names shared by the app's stacks that write CloudFormation outputs and ``llmhost``, which reads them.

They are the app's, not the construct library's: another team's app names its own stacks. The
stacks import them from here (``from llmhost import outputs``): ``make install`` installs this package.

The stacks (``stacks/``) create ``CfnOutput``s with these keys; the ops CLI
(``llmhost``) finds a deployed environment by reading them back with
``cloudformation:DescribeStacks``. Keeping both sides on one module is what stops a
renamed output from silently breaking ``llmhost prewarm`` or ``llmhost chat``.

Pure Python on purpose: the CLI imports it without paying for aws-cdk-lib.

Use the constant as the output's construct id, so that the output key in the
template is exactly the constant (CDK only prefixes ids of outputs nested below the
stack; keep these outputs at stack level)::

    CfnOutput(self, outputs.API_URL, value=api.url)
"""

from __future__ import annotations

from typing import Final

# --- stack names -----------------------------------------------------------------

# The logical part of each stack's name; the deployed name is ``stack_name(env, ...)``.
NETWORK: Final = "network"
MODEL_CACHE: Final = "model-cache"
SERVING: Final = "serving"
API: Final = "api"
MONITORING: Final = "monitoring"
SAGEMAKER: Final = "sagemaker"

STACKS: Final[tuple[str, ...]] = (NETWORK, MODEL_CACHE, SERVING, API, MONITORING, SAGEMAKER)


def stack_name(env: str, stack: str) -> str:
    """CloudFormation stack name of ``stack`` in environment ``env``: ``dev`` + ``serving`` → ``dev-serving``.

    One rule for every stack, so that a tool that knows only the environment name can
    find each stack without listing the account's stacks.
    """
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}; expected one of {', '.join(STACKS)}")
    return f"{env}-{stack}"


# --- output keys, grouped by the stack that writes them --------------------------

# api stack: the public front door.
API_URL: Final = "ApiUrl"
"""Invoke URL of the REST API stage, ending in ``/`` (e.g. ``https://abc.execute-api.eu-west-1.amazonaws.com/prod/``)."""
API_KEY_IDS: Final = "ApiKeyIds"
"""Comma-separated API Gateway key IDs (not values): ``apigateway:GetApiKey`` with ``includeValue`` reads the value."""
API_BACKEND_SECURITY_GROUP: Final = "BackendSecurityGroupId"
"""Security group of the internal ALB the API's VPC link calls, as the api stack read it at its last deploy."""

# serving stack: ECS cluster, service and the one-off pre-warm task.
CLUSTER_NAME: Final = "ClusterName"
SERVICE_NAME: Final = "ServiceName"
LOAD_BALANCER_DNS: Final = "LoadBalancerDns"
"""DNS name of the internal ALB (reachable only from inside the VPC)."""
PREWARM_TASK_DEFINITION_ARN: Final = "PrewarmTaskDefinitionArn"
PREWARM_SUBNETS: Final = "PrewarmSubnets"
"""Comma-separated private subnet IDs the pre-warm task runs in."""
PREWARM_SECURITY_GROUP: Final = "PrewarmSecurityGroup"
PREWARM_CAPACITY_PROVIDER: Final = "PrewarmCapacityProvider"
"""Capacity provider to run the pre-warm task on; absent when it runs on Fargate."""
PREWARM_LOG_GROUP: Final = "PrewarmLogGroup"
PREWARM_COMMAND: Final = "PrewarmCommand"
"""The exact ``aws ecs run-task ...`` command line that runs the pre-warm task (for people without ``llmhost``)."""

# model-cache stack.
MODEL_CACHE_FILE_SYSTEM_ID: Final = "ModelCacheFileSystemId"

# monitoring stack.
ALARM_TOPIC_ARN: Final = "AlarmTopicArn"
DASHBOARD_NAME: Final = "DashboardName"

# sagemaker stack.
SAGEMAKER_ENDPOINT_NAME: Final = "SageMakerEndpointName"

# Which stack writes which output: lets the CLI say "stack dev-api is not deployed"
# rather than "output ApiUrl missing" when it reads one stack at a time.
OUTPUT_STACK: Final[dict[str, str]] = {
    API_URL: API,
    API_KEY_IDS: API,
    API_BACKEND_SECURITY_GROUP: API,
    CLUSTER_NAME: SERVING,
    SERVICE_NAME: SERVING,
    LOAD_BALANCER_DNS: SERVING,
    PREWARM_TASK_DEFINITION_ARN: SERVING,
    PREWARM_SUBNETS: SERVING,
    PREWARM_SECURITY_GROUP: SERVING,
    PREWARM_CAPACITY_PROVIDER: SERVING,
    PREWARM_LOG_GROUP: SERVING,
    PREWARM_COMMAND: SERVING,
    MODEL_CACHE_FILE_SYSTEM_ID: MODEL_CACHE,
    ALARM_TOPIC_ARN: MONITORING,
    DASHBOARD_NAME: MONITORING,
    SAGEMAKER_ENDPOINT_NAME: SAGEMAKER,
}
