"""Reusable CDK constructs for hosting an open-weight LLM on AWS.

The import name is ``llm_hosting_constructs`` on purpose: a package called
``constructs`` would shadow the CDK base library (``from constructs import Construct``).
Submodules are imported explicitly (``from llm_hosting_constructs.network import ...``)
so that light users such as the sizing module do not pay for aws-cdk-lib's import.
"""
