"""The two secrets the serving task reads: the Hugging Face token (vLLM) and the gateway's API keys."""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class ServingSecrets(Construct):
    """Secrets Manager secrets for the serving task, never plaintext in a template or task definition.

    - ``hf_token``: the Hugging Face token vLLM and the pre-warm task download gated models
      with. Created empty-valued (a placeholder you overwrite with
      ``aws secretsmanager put-secret-value``) unless ``existing_hf_token_secret_name`` names
      one you manage. A plain string secret.
    - ``api_keys``: the gateway's keys, JSON ``{"key-id": "key"}`` as the gateway expects,
      created with one random 48-character key under ``generated_key_id`` (what your front door
      sends as its bearer key). Add keys by putting a new JSON value; the tasks read it when they start.

    Both are encrypted with ``key`` (a customer-managed KMS key). Neither rotates
    automatically: the HF token is issued by huggingface.co, and a rotated gateway key must
    reach the front door at the same moment, which is a deploy, not a Lambda.

    Attributes: ``hf_token``, ``api_keys``, ``generated_key_id``, ``hf_token_created`` (False when referenced).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        key: kms.IKey,
        existing_hf_token_secret_name: str | None = None,
        generated_key_id: str = "default",
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if not generated_key_id.strip():
            raise ValueError("ServingSecrets: generated_key_id must not be blank")
        self.generated_key_id = generated_key_id
        if existing_hf_token_secret_name is not None and not existing_hf_token_secret_name.strip():
            raise ValueError("ServingSecrets: existing_hf_token_secret_name must not be blank")

        no_rotation = (
            "is issued outside AWS (Hugging Face token / front-door key) and rotated by a deploy, not a Lambda"
        )
        self.hf_token_created = existing_hf_token_secret_name is None
        if existing_hf_token_secret_name is None:
            created = secretsmanager.Secret(
                self,
                "HfToken",
                description="Hugging Face token for vLLM and the model pre-warm (put-secret-value after deploy)",
                encryption_key=key,
                # A random placeholder, not a credential: an operator puts the real token.
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=32, exclude_punctuation=True
                ),
                removal_policy=removal_policy,
            )
            Validations.of(created).acknowledge(
                Acknowledgment(id="AwsSolutions::AwsSolutions-SMG4", reason=f"This secret {no_rotation}.")
            )
            self.hf_token: secretsmanager.ISecret = created
        else:
            self.hf_token = secretsmanager.Secret.from_secret_name_v2(self, "HfToken", existing_hf_token_secret_name)

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
