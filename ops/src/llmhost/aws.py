"""AWS access for the CLI: one boto3 session per environment, stack outputs, one-line errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from . import outputs
from .errors import LlmhostError

T = TypeVar("T")
PROFILE_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")

# Stack states in which outputs are complete and current.
_READY = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_PROFILE (or pass --profile), export AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or run `aws sso login`"
)


class _StackMissing(LlmhostError):
    """CloudFormation says the stack does not exist (reworded by :meth:`Aws.stack_outputs`)."""


class Aws:
    """A boto3 session bound to one environment's region (and account, for clearer errors)."""

    def __init__(self, *, region: str, profile: str | None = None, expected_account: str | None = None) -> None:
        try:
            self.session = boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound as exc:
            # Without --profile, botocore took the name from AWS_PROFILE (or AWS_DEFAULT_PROFILE).
            name = exc.kwargs.get("profile", profile)
            source = next((f" (from ${v})" for v in PROFILE_VARS if not profile and os.environ.get(v) == name), "")
            raise LlmhostError(f"AWS profile {name!r}{source} is not configured (see ~/.aws/config)") from None
        self.region = region
        self.expected_account = expected_account

    def client(self, service: str) -> Any:
        try:
            return self.session.client(service)
        except NoRegionError:
            raise LlmhostError("no AWS region: the environment config names one; pass it with --region") from None

    def call(self, what: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run one API call, turning credential, network and permission failures into one line."""
        try:
            return fn(**kwargs)
        except (NoCredentialsError, PartialCredentialsError):
            raise LlmhostError(NO_CREDENTIALS) from None
        except EndpointConnectionError as exc:
            raise LlmhostError(f"cannot reach AWS ({exc.kwargs.get('endpoint_url', self.region)}) to {what}") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if code in {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}:
                raise LlmhostError("AWS credentials have expired: refresh them (e.g. `aws sso login`)") from None
            if code in {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"}:
                raise LlmhostError(
                    f"AWS rejected the credentials ({code}): check AWS_PROFILE / the access keys"
                ) from None
            if code == "ValidationError" and "does not exist" in message:
                raise _StackMissing(message) from None
            if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
                raise LlmhostError(f"not allowed to {what}: {message}") from None
            raise LlmhostError(f"failed to {what}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise LlmhostError(f"failed to {what}: {exc}") from None

    def account(self) -> str:
        sts = self.client("sts")
        return str(self.call("read the caller identity", sts.get_caller_identity)["Account"])

    def stack_outputs(self, env: str, stack: str) -> dict[str, str]:
        """Outputs of stack ``stack`` of environment ``env`` (named by :func:`outputs.stack_name`)."""
        name = outputs.stack_name(env, stack)
        cfn = self.client("cloudformation")
        try:
            stacks = self.call(f"describe stack {name}", cfn.describe_stacks, StackName=name)["Stacks"]
        except _StackMissing:
            account = self.account()
            where = f"account {account}, {self.region}"
            if self.expected_account and account != self.expected_account:
                where += f"; the config deploys {env} to account {self.expected_account}: use its credentials"
            raise LlmhostError(
                f"stack {name} is not deployed ({where}): deploy it with `npx cdk deploy '{env}/*'`"
            ) from None
        status = stacks[0]["StackStatus"]
        if status not in _READY:
            raise LlmhostError(f"stack {name} is {status}, not ready: wait for the deployment or fix it first")
        return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}

    def output(self, env: str, key: str, *, required: bool = True) -> str | None:
        """One output, looked up in the stack that writes it (see ``outputs.OUTPUT_STACK``)."""
        stack = outputs.OUTPUT_STACK[key]
        values = self.stack_outputs(env, stack)
        if key not in values and required:
            raise LlmhostError(
                f"stack {outputs.stack_name(env, stack)} has no output {key}: it was deployed from an older "
                "version of this app; redeploy it"
            )
        return values.get(key)
