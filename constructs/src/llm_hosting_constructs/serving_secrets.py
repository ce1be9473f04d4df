"""The two secrets the serving task reads: the Hugging Face token (vLLM) and the gateway's API keys."""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class ServingSecrets(Construct):
    """Secrets Manager secrets for the serving task, never plaintext in a template or task definition.

    - ``hf_token``: the Hugging Face token the pre-warm task (and vLLM, when it may download)
      reads for gated models: the existing secret ``hf_token_secret_name`` (a plain
      string, created with ``aws secretsmanager create-secret`` before the first deploy), or
      None for public models and S3-staged weights.
    - ``api_keys``: the gateway's keys, JSON ``{"key-id": "key"}`` as the gateway expects,
      created with one random 48-character key under ``generated_key_id`` (what your front door
      sends as its bearer key). Add keys by putting a new JSON value; the tasks read it when they start.

    Both are encrypted with ``key`` (a customer-managed KMS key). Neither rotates
    automatically: the HF token is issued by huggingface.co, and a rotated gateway key must
    reach the front door at the same moment, which is a deploy, not a Lambda.

    Attributes: ``hf_token`` (None without a name), ``api_keys``, ``generated_key_id``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        key: kms.IKey,
        hf_token_secret_name: str | None = None,
        generated_key_id: str = "default",
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if not generated_key_id.strip():
            raise ValueError("ServingSecrets: generated_key_id must not be blank")
        self.generated_key_id = generated_key_id
        if hf_token_secret_name is not None and not hf_token_secret_name.strip():
            raise ValueError("ServingSecrets: hf_token_secret_name must not be blank")

        no_rotation = (
            "holds the gateway's keys, which must reach the front door at the same moment: rotated by a deploy, "
            "not a Lambda"
        )
        # Never created here: a generated placeholder is not a token, the deploy that created it would
        # already need the real one (the pre-warm runs during the deploy), and the Hub answers 401 to an
        # invalid token even for public models. The secret must exist before the first deploy.
        self.hf_token: secretsmanager.ISecret | None = (
            secretsmanager.Secret.from_secret_name_v2(self, "HfToken", hf_token_secret_name)
            if hf_token_secret_name is not None
            else None
        )

        self.api_keys = secretsmanager.Secret(
            self,
            "ApiKeys",
            description=f'Gateway API keys, JSON {{"key-id": "key"}}; the front door sends the "{generated_key_id}" key',
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({}),
                generate_string_key=generated_key_id,
                password_length=48,
                exclude_punctuation=True,
            ),
            removal_policy=removal_policy,
        )
        Validations.of(self.api_keys).acknowledge(
            Acknowledgment(id="AwsSolutions::AwsSolutions-SMG4", reason=f"This secret {no_rotation}.")
        )
