"""Shapes of AWS names that the constructs, the config schema and the stacks all check: one
definition each. Standard library only (the config schema imports it without aws-cdk-lib)."""

from __future__ import annotations

import re
from typing import Final

S3_PREFIX_PATTERN: Final = r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<prefix>(?:[^/]+/)+)$"
"""``s3://bucket/prefix/``: an S3 bucket name (3-63 characters, lower case) and a non-empty key prefix
ending in ``/`` (a "folder" of files, e.g. a model revision staged for SageMaker or the pre-warm)."""
S3_PREFIX_URI: Final = re.compile(S3_PREFIX_PATTERN)


def ecr_registry(account: str, region: str) -> str:
    """The private ECR registry of an account and region, as images in it start: ``<account>.dkr.ecr.<region>.amazonaws.com/``."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com/"
