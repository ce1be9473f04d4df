"""One environment's synthesized templates, with the few CloudFormation intrinsics resolved locally.

What CloudFormation would resolve at deploy time is resolved here the same way, with local values:

- ``Fn::ImportValue`` finds the export among the environment's own stacks and resolves its value in
  the exporting stack; ``Fn::Join`` joins; ``Ref``/``Fn::GetAtt`` of any other resource become a stable
  placeholder (``local.<stack>.<logical id>[.<attribute>]``, a valid host name): nothing here needs a real ARN or DNS name.
- A Secrets Manager secret gets a value generated as its ``GenerateSecretString`` asks (a JSON object
  from ``SecretStringTemplate`` with ``GenerateStringKey`` set, else a plain string). An ECS container
  secret receives the whole secret string (AWS: "Pass Secrets Manager secrets through Amazon ECS
  environment variables", https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html);
  a ``{{resolve:secretsmanager:ID:SecretString:KEY::}}`` dynamic reference receives that JSON key
  (AWS: "Get values stored in other services using dynamic references",
  https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/dynamic-references-secretsmanager.html).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.synth_summary import stack_templates

PLACEHOLDER = "local."
# {{resolve:secretsmanager:secret-id:SecretString:json-key:version-stage:version-id}}
_DYNAMIC_SECRET = re.compile(r"\{\{resolve:secretsmanager:(.+?):SecretString:([^:}]*)(?::[^:}]*){0,2}\}\}")


class TemplateError(ValueError):
    """The templates lack something the local stack needs; the message is one line."""


def _generate(spec: dict[str, Any]) -> str:
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-./:;<=>?@[]^_{|}~"
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    key = spec.get("GenerateStringKey")
    if key is None:
        return value
    document = json.loads(spec.get("SecretStringTemplate", "{}"))
    document[key] = value
    return json.dumps(document)


@dataclass
class Environment:
    """The stacks of one environment (``{stack name: template}``) and the local secret values."""

    name: str
    stacks: dict[str, dict[str, Any]]
    secret_values: dict[str, str] = field(default_factory=dict)
    """{placeholder of the secret resource: its generated string}."""

    @classmethod
    def load(cls, cdk_out: Path, name: str) -> Environment:
        envs = stack_templates(cdk_out)
        if name not in envs:
            known = ", ".join(envs) or "none"
            raise TemplateError(f"{cdk_out}: no templates of environment {name!r} (found: {known}); run `make synth`")
        env = cls(name, envs[name])
        for stack, template in env.stacks.items():
            for lid, res in template.get("Resources", {}).items():
                if res["Type"] == "AWS::SecretsManager::Secret":
                    spec = res.get("Properties", {}).get("GenerateSecretString", {})
                    env.secret_values[f"{PLACEHOLDER}{stack}.{lid}"] = _generate(spec)
        return env

    def resources(self, type_: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(stack, logical id, resource) of every resource of ``type_``."""
        return [
            (stack, lid, res)
            for stack, template in self.stacks.items()
            for lid, res in template.get("Resources", {}).items()
            if res["Type"] == type_
        ]

    def resolve(self, value: Any, stack: str) -> Any:
        """``value`` with intrinsics evaluated in ``stack``; dynamic secret references filled in."""
        if isinstance(value, list):
            return [self.resolve(v, stack) for v in value]
        if isinstance(value, str):
            return _DYNAMIC_SECRET.sub(lambda m: self._secret_key(m.group(1), m.group(2)), value)
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return arg if arg.startswith("AWS::") else f"{PLACEHOLDER}{stack}.{arg}"
            if fn == "Fn::GetAtt":
                return f"{PLACEHOLDER}{stack}.{arg[0]}.{arg[1]}"
            if fn == "Fn::Join":
                sep, parts = arg
                return self.resolve(sep.join(str(self.resolve(p, stack)) for p in parts), stack)
            if fn == "Fn::ImportValue":
                return self._import(self.resolve(arg, stack))
        return {k: self.resolve(v, stack) for k, v in value.items()}

    def secret(self, ref: str) -> str:
        """The whole string of the secret a resolved ``Ref`` names (what ECS puts in the container).

        A secret the template names by ARN exists before the deploy (the HF token, created by the
        operator): locally it gets a stand-in value, since the local engine never reaches the Hub."""
        if ref in self.secret_values:
            return self.secret_values[ref]
        if ref.startswith("arn:") and ":secretsmanager:" in ref:
            return f"local-stand-in-for-{ref.rsplit(':secret:', 1)[-1]}"
        raise TemplateError(f"{ref} is not a Secrets Manager secret of environment {self.name!r}")

    def _secret_key(self, ref: str, key: str) -> str:
        value = self.secret(ref)
        return json.loads(value)[key] if key else value

    def _import(self, export_name: str) -> Any:
        for stack, template in self.stacks.items():
            for output in template.get("Outputs", {}).values():
                if output.get("Export", {}).get("Name") == export_name:
                    return self.resolve(output["Value"], stack)
        raise TemplateError(f"export {export_name!r} is imported but no stack of {self.name!r} exports it")
