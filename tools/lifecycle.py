"""What CloudFormation will do with a cloud assembly: deploy order, delete order, update replacements.

Shared by `tools/diff.py` (`make diff`) and `tests/lifecycle/`. It reads synthesized templates only
(manifest.json for stack dependencies, templates for resources, DependsOn, Ref/GetAtt/Sub and
Fn::ImportValue) and the CloudFormation resource schemas that cfn-lint ships: a change to a
property listed in a type's `createOnlyProperties` replaces the resource (docs/lifecycle.md cites
the AWS pages). No AWS call, no credentials.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Resources whose replacement or deletion loses data or breaks what was encrypted/stored with them.
STATEFUL_TYPES = frozenset(
    {
        "AWS::EFS::FileSystem",
        "AWS::KMS::Key",
        "AWS::SecretsManager::Secret",
        "AWS::S3::Bucket",
        "AWS::Logs::LogGroup",
        "AWS::DynamoDB::Table",
        "AWS::RDS::DBCluster",
        "AWS::RDS::DBInstance",
    }
)
# Archives: when UpdateReplacePolicy keeps the old one (Retain/Snapshot), its data stays readable and
# a replacement is a warning. A new file system, key or secret is empty or different: always blocking.
ARCHIVE_TYPES = frozenset({"AWS::Logs::LogGroup", "AWS::S3::Bucket"})
CUSTOM_TYPES = ("Custom::", "AWS::CloudFormation::CustomResource")
CDK_ENV = {
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "CDK_DISABLE_VERSION_CHECK": "1",
}


# ---------------------------------------------------------------------------------------------
# Reading a cloud assembly


@dataclass(frozen=True)
class Stack:
    """One CloudFormation stack of a synthesized environment."""

    name: str  # the deployed stack name, e.g. dev-serving
    path: str  # the CDK path, e.g. dev/serving
    region: str
    template: dict
    dependencies: frozenset[str]  # stack names that CDK deploys before this one
    termination_protection: bool

    @property
    def resources(self) -> dict[str, dict]:
        return self.template.get("Resources", {})

    def exports(self) -> dict[str, object]:
        """{export name: output value}."""
        found = {}
        for output in self.template.get("Outputs", {}).values():
            name = output.get("Export", {}).get("Name")
            if isinstance(name, str):
                found[name] = output["Value"]
        return found

    def depends_on(self, logical_id: str) -> set[str]:
        """Resources this one waits for on create (DependsOn and every Ref/GetAtt/Sub), same stack."""
        resource = self.resources[logical_id]
        explicit = resource.get("DependsOn", [])
        explicit = [explicit] if isinstance(explicit, str) else explicit
        implicit = {target for target, _ in references({k: v for k, v in resource.items() if k != "DependsOn"})}
        return (set(explicit) | implicit) & self.resources.keys()

    def closure(self, logical_id: str) -> set[str]:
        """Everything `logical_id` transitively waits for in this stack (so: deleted after it)."""
        seen: set[str] = set()
        todo = [logical_id]
        while todo:
            for dep in self.depends_on(todo.pop()) - seen:
                seen.add(dep)
                todo.append(dep)
        return seen


Environment = dict[str, Stack]  # by stack name


def load_assembly(outdir: Path) -> dict[str, Environment]:
    """{environment (stage) name: {stack name: Stack}} for every nested stage assembly in `outdir`."""
    envs: dict[str, Environment] = {}
    for assembly in sorted(outdir.glob("assembly-*")):
        manifest = json.loads((assembly / "manifest.json").read_text())
        artifacts = manifest["artifacts"]
        names = {aid: a["properties"].get("stackName") or aid for aid, a in artifacts.items() if _is_stack(a)}
        stacks = {}
        for aid, artifact in artifacts.items():
            if not _is_stack(artifact):
                continue
            props = artifact["properties"]
            stacks[names[aid]] = Stack(
                name=names[aid],
                path=artifact.get("displayName", aid),
                region=artifact["environment"].rsplit("/", 1)[-1],
                template=json.loads((assembly / props["templateFile"]).read_text()),
                dependencies=frozenset(names[d] for d in artifact.get("dependencies", []) if d in names),
                termination_protection=bool(props.get("terminationProtection")),
            )
        envs[assembly.name.removeprefix("assembly-")] = dict(sorted(stacks.items()))
    return envs


def _is_stack(artifact: dict) -> bool:
    return artifact["type"] == "aws:cloudformation:stack"


def references(value: object) -> Iterator[tuple[str, str | None]]:
    """(logical id, attribute or None) for every Ref, Fn::GetAtt and Fn::Sub variable in `value`."""
    if isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str):
                yield arg, None
                return
            if key == "Fn::GetAtt":
                target, attr = (arg.split(".", 1) + [None])[:2] if isinstance(arg, str) else (arg[0], arg[1])
                yield target, attr if isinstance(attr, str) else None
                return
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
                for match in re.finditer(r"\$\{([^!}][^}]*)\}", text):
                    target, _, attr = match.group(1).partition(".")
                    if target not in variables:
                        yield target, attr or None
                yield from references(variables)
                return
        for item in value.values():
            yield from references(item)


def _calls(value: object, function: str) -> Iterator[object]:
    """The argument of every `function` intrinsic (e.g. Fn::ImportValue) anywhere in `value`."""
    if isinstance(value, list):
        for item in value:
            yield from _calls(item, function)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == function:
                yield arg
            else:
                yield from _calls(arg, function)


def imports(value: object) -> set[str]:
    """Export names read with Fn::ImportValue anywhere in `value`."""
    return {arg for arg in _calls(value, "Fn::ImportValue") if isinstance(arg, str)}


def stack_outputs_read(value: object) -> set[tuple[str, str]]:
    """(stack name, output name) read with Fn::GetStackOutput (a weak reference) in `value`."""
    return {
        (str(arg.get("StackName")), str(arg.get("OutputName")))
        for arg in _calls(value, "Fn::GetStackOutput")
        if isinstance(arg, dict)
    }


def origins(env: Environment, stack_name: str, value: object) -> set[tuple[str, str]]:
    """(stack, logical id) of the resources `value` comes from: Ref/GetAtt in its stack, and across
    stacks through Fn::ImportValue, Fn::GetStackOutput and SSM parameters (a template parameter of
    type AWS::SSM::Parameter::Value<...> or a {{resolve:ssm:NAME}} reference) that another stack writes."""
    stack = env[stack_name]
    found: set[tuple[str, str]] = set()
    ssm_names = set(re.findall(r"\{\{resolve:ssm:([^:}]+)", json.dumps(value)))
    for target, _ in references(value):
        if target in stack.resources:
            found.add((stack_name, target))
        parameter = stack.template.get("Parameters", {}).get(target, {})
        if str(parameter.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
            ssm_names.add(str(parameter.get("Default")))
    for name in imports(value):
        producer = exporter(env, name)
        if producer is not None:
            found |= origins(env, producer[0].name, producer[1])
    for producer_name, output in stack_outputs_read(value):
        out = env[producer_name].template.get("Outputs", {}).get(output) if producer_name in env else None
        if out is not None:
            found |= origins(env, producer_name, out["Value"])
    for other in env.values():
        for lid, res in other.resources.items():
            if res["Type"] == "AWS::SSM::Parameter" and res.get("Properties", {}).get("Name") in ssm_names:
                found |= origins(env, other.name, res["Properties"].get("Value"))
    return found


def importers(env: Environment) -> dict[str, set[str]]:
    """{export name: names of the stacks that import it}."""
    found: dict[str, set[str]] = {}
    for stack in env.values():
        for name in imports(stack.template):
            found.setdefault(name, set()).add(stack.name)
    return found


def exporter(env: Environment, export_name: str) -> tuple[Stack, object] | None:
    """The stack that exports `export_name` and the exported value."""
    for stack in env.values():
        if export_name in stack.exports():
            return stack, stack.exports()[export_name]
    return None


def stack_closure(env: Environment, name: str) -> set[str]:
    """Stacks deployed before `name` (its transitive manifest dependencies)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in env[todo.pop()].dependencies - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def created_before(env: Environment, first: tuple[str, str], then: tuple[str, str]) -> bool:
    """Whether CloudFormation/CDK finish (stack, logical id) `first` before creating `then`."""
    (s1, r1), (s2, r2) = first, then
    if s1 == s2:
        return r1 in env[s2].closure(r2)
    return s1 in stack_closure(env, s2)


# ---------------------------------------------------------------------------------------------
# Replacement rules from the resource schemas cfn-lint ships


@cache
def create_only_paths(region: str, type_name: str) -> tuple[tuple[str, ...], ...]:
    """The type's `createOnlyProperties` as path tuples under Properties (`*` = every item)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    if type_name.startswith(CUSTOM_TYPES):
        return ()
    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, type_name).schema
    except Exception:  # unknown type (cfn-lint raises its own ResourceNotFoundError): no known rule
        return ()
    return tuple(tuple(p.split("/")[2:]) for p in schema.get("createOnlyProperties", []))


def _values_at(value: object, path: tuple[str, ...]) -> list[object]:
    if not path:
        return [value]
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
        return [value]  # an intrinsic stands for the whole subtree: compare it as a whole
    head, rest = path[0], path[1:]
    if head == "*":
        items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
        return [v for item in items for v in _values_at(item, rest)]
    if isinstance(value, dict):
        return _values_at(value.get(head), rest)
    return [None]


def _canon(value: object) -> str:
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Diff of two synthesized versions of one environment


@dataclass
class Change:
    stack: str
    logical_id: str
    type: str
    action: str  # add | remove | update | replace
    properties: list[str] = field(default_factory=list)  # top-level properties that differ
    reasons: list[str] = field(default_factory=list)  # why it is replaced

    @property
    def stateful(self) -> bool:
        return self.type in STATEFUL_TYPES


@dataclass
class EnvDiff:
    environment: str
    changes: list[Change] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)  # what fails the deploy or destroys data
    warnings: list[str] = field(default_factory=list)

    def replaced(self) -> list[Change]:
        return [c for c in self.changes if c.action == "replace"]


def diff_environment(name: str, before: Environment, after: Environment) -> EnvDiff:
    """What deploying `after` over a deployed `before` does, by CloudFormation's rules."""
    result = EnvDiff(name)
    replaced: dict[str, set[str]] = {}  # stack -> logical ids replaced (cascade source)
    pending: dict[tuple[str, str], Change] = {}
    for stack_name in sorted(before.keys() | after.keys()):
        old = before[stack_name].resources if stack_name in before else {}
        new = after[stack_name].resources if stack_name in after else {}
        for lid in sorted(old.keys() | new.keys()):
            o, n = old.get(lid), new.get(lid)
            if n is None or o is None:
                res = o or n
                assert res is not None
                result.changes.append(Change(stack_name, lid, res["Type"], "remove" if n is None else "add"))
                continue
            if o["Type"] != n["Type"]:
                change = Change(stack_name, lid, n["Type"], "replace", reasons=[f"Type {o['Type']} -> {n['Type']}"])
            else:
                props = _differing(o, n)
                change = Change(stack_name, lid, n["Type"], "update" if props else "none", props)
                if props:
                    region = after[stack_name].region
                    change.reasons = [
                        "/".join(p)
                        for p in create_only_paths(region, n["Type"])
                        if _canon(_values_at(o.get("Properties", {}), p)) != _canon(_values_at(n.get("Properties", {}), p))
                    ]
                    if change.reasons:
                        change.action = "replace"
            if change.action == "replace":
                replaced.setdefault(stack_name, set()).add(lid)
            pending[(stack_name, lid)] = change
    _cascade(after, pending, replaced)
    result.changes.extend(c for c in pending.values() if c.action != "none")
    result.changes.sort(key=lambda c: (c.stack, c.logical_id))
    _judge(result, before, after, replaced)
    return result


def _differing(old: dict, new: dict) -> list[str]:
    """Top-level properties (and resource attributes) that differ; Metadata is not deployed state."""
    keys = []
    for key in sorted(old.keys() | new.keys()):
        if key in ("Metadata", "Properties"):
            continue
        if _canon(old.get(key)) != _canon(new.get(key)):
            keys.append(key)
    op, np_ = old.get("Properties", {}), new.get("Properties", {})
    keys += [k for k in sorted(op.keys() | np_.keys()) if _canon(op.get(k)) != _canon(np_.get(k))]
    return keys


def _cascade(after: Environment, pending: dict[tuple[str, str], Change], replaced: dict[str, set[str]]) -> None:
    """A replaced resource gets a new physical id: what references it in a create-only property is
    replaced too, what references it elsewhere is updated. Repeat until nothing changes."""
    grew = True
    while grew:
        grew = False
        for (stack_name, lid), change in pending.items():
            gone = replaced.get(stack_name, set())
            if change.action == "replace" or not gone or stack_name not in after:
                continue
            resource = after[stack_name].resources[lid]
            props = resource.get("Properties", {})
            region = after[stack_name].region
            for path in create_only_paths(region, change.type):
                hit = {t for t, _ in references(_values_at(props, path))} & gone
                if hit:
                    change.action = "replace"
                    change.reasons.append(f"{'/'.join(path)} (references replaced {', '.join(sorted(hit))})")
            if change.action == "replace":
                gone.add(lid)
                grew = True
            elif change.action == "none" and {t for t, _ in references(resource)} & gone:
                change.action = "update"
                change.properties = ["(references a replaced resource)"]


def _judge(result: EnvDiff, before: Environment, after: Environment, replaced: dict[str, set[str]]) -> None:
    """Blocking findings: data lost, updates CloudFormation refuses."""
    by_stack: dict[str, list[Change]] = {}
    for change in result.changes:
        by_stack.setdefault(change.stack, []).append(change)
    for change in result.changes:
        where = f"{change.stack}/{change.logical_id} ({change.type})"
        if change.action == "replace" and change.stateful:
            kept = before[change.stack].resources[change.logical_id].get("UpdateReplacePolicy", "Delete")
            if change.type in ARCHIVE_TYPES and kept in ("Retain", "Snapshot"):
                result.warnings.append(f"{where} is replaced ({'; '.join(change.reasons)}); UpdateReplacePolicy {kept} keeps the old one")
            else:
                result.blocking.append(f"stateful {where} is replaced ({'; '.join(change.reasons)}): its data is lost")
        if change.action == "replace" and after.get(change.stack):
            _custom_name(result, before[change.stack], after[change.stack], change, where)
        if change.action == "remove" and change.stateful:
            twin = [
                c for c in by_stack[change.stack] if c.action == "add" and c.type == change.type and c.stack in before
            ]
            if twin:
                result.blocking.append(
                    f"stateful {where} is removed while {twin[0].logical_id} of the same type is added: a new logical"
                    " id is a new resource, the old one and its data are deleted"
                )
            else:
                policy = before[change.stack].resources[change.logical_id].get("DeletionPolicy", "Delete")
                result.warnings.append(f"stateful {where} is removed (DeletionPolicy {policy})")
    _sagemaker_autoscaled_variants(result, before, after)
    used = importers(before)
    for export_name, consumers in sorted(used.items()):
        producer = exporter(before, export_name)
        if producer is None:
            continue
        stack, value = producer
        new_stack = after.get(stack.name)
        new_value = new_stack.exports().get(export_name) if new_stack else None
        gone = {t for t, _ in references(new_value)} & replaced.get(stack.name, set())
        if new_value is None or _canon(new_value) != _canon(value) or gone:
            why = "is removed" if new_value is None else f"changes (replaced: {', '.join(sorted(gone))})" if gone else "changes"
            result.blocking.append(
                f"export {export_name} {why} while {', '.join(sorted(consumers))} imports it:"
                " CloudFormation fails the update ('Export ... cannot be updated as it is in use')"
            )
    for stack in after.values():
        for producer_name, output in sorted(stack_outputs_read(stack.template)):
            producer = after.get(producer_name)
            value = producer.template.get("Outputs", {}).get(output, {}).get("Value") if producer else None
            gone = {t for t, _ in references(value)} & replaced.get(producer_name, set())
            if gone:
                result.warnings.append(
                    f"{stack.name} reads {producer_name}.{output} (Fn::GetStackOutput) whose resource is replaced"
                    f" ({', '.join(sorted(gone))}): it keeps the old value until {stack.name} itself is updated"
                )


def _sagemaker_autoscaled_variants(result: EnvDiff, before: Environment, after: Environment) -> None:
    """AWS "Update endpoints that use auto scaling": UpdateEndpoint fails when it changes the instance
    type of (or removes) a variant registered as a scalable target. CloudFormation updates the
    endpoint in place (same name) while the old scalable target is still registered."""
    for change in result.changes:
        if change.type != "AWS::SageMaker::Endpoint" or change.action != "update" or change.stack not in before:
            continue
        old_variants = _endpoint_variants(before[change.stack], change.logical_id)
        new_variants = _endpoint_variants(after[change.stack], change.logical_id)
        for stack in before.values():
            for lid, res in stack.resources.items():
                props = res.get("Properties", {})
                if res["Type"] != "AWS::ApplicationAutoScaling::ScalableTarget" or props.get("ServiceNamespace") != "sagemaker":
                    continue
                if stack.name != change.stack or change.logical_id not in {t for t, _ in references(props.get("ResourceId"))}:
                    continue
                for variant, instance_type in old_variants.items():
                    if new_variants.get(variant) != instance_type:
                        result.blocking.append(
                            f"{change.stack}/{change.logical_id}: UpdateEndpoint changes variant {variant}"
                            f" ({instance_type} -> {new_variants.get(variant, 'removed')}) while {lid} registers it"
                            " for auto scaling: SageMaker rejects the update (deregister first, or deploy a new endpoint)"
                        )


def _endpoint_variants(stack: Stack, endpoint: str) -> dict[str, object]:
    """{variant name: instance type} of the endpoint config the endpoint points at."""
    config = {t for t, _ in references(stack.resources[endpoint].get("Properties", {}).get("EndpointConfigName"))}
    variants = {}
    for lid in config & stack.resources.keys():
        for v in stack.resources[lid].get("Properties", {}).get("ProductionVariants", []):
            variants[str(v.get("VariantName"))] = v.get("InstanceType")
    return variants


def _custom_name(result: EnvDiff, before: Stack, after: Stack, change: Change, where: str) -> None:
    """AWS: a resource with a name you set cannot be replaced unless the name changes too."""
    if change.logical_id not in before.resources:
        return
    old = before.resources[change.logical_id].get("Properties", {})
    new = after.resources[change.logical_id].get("Properties", {})
    for path in create_only_paths(after.region, change.type):
        if not path[-1].endswith("Name") or "*" in path:
            continue
        value = _values_at(new, path)[0]
        if value is not None and _canon(value) == _canon(_values_at(old, path)[0]):
            result.blocking.append(
                f"{where} must be replaced but keeps its custom name {'/'.join(path)}={_canon(value)}:"
                " CloudFormation cannot replace a custom-named resource; change the name too"
            )


def diff_assemblies(before: dict[str, Environment], after: dict[str, Environment]) -> list[EnvDiff]:
    """One EnvDiff per environment present on either side."""
    return [diff_environment(n, before.get(n, {}), after.get(n, {})) for n in sorted(before.keys() | after.keys())]


def render(diffs: list[EnvDiff]) -> str:
    """The human report: per environment and stack, +added -removed ~updated !replaced (and why)."""
    marks = {"add": "+", "remove": "-", "update": "~", "replace": "!"}
    lines: list[str] = []
    for d in diffs:
        lines.append(f"== {d.environment}: {len(d.changes)} changes, {len(d.replaced())} replacements")
        stack = None
        for c in d.changes:
            if c.stack != stack:
                stack = c.stack
                lines.append(f"  {stack}")
            detail = ""
            if c.action == "replace":
                detail = f"  REPLACE: {'; '.join(c.reasons)}"
            elif c.action == "update":
                detail = f"  ({', '.join(c.properties)})"
            lines.append(f"    {marks[c.action]} {c.type} {c.logical_id}{detail}")
        lines += [f"  BLOCKING: {b}" for b in d.blocking]
        lines += [f"  warning: {w}" for w in d.warnings]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Synthesizing a checkout


def synth(source: Path, outdir: Path, *, node_modules: Path | None = None) -> None:
    """The real CLI in `source` (a checkout whose .venv and node_modules exist or are links)."""
    env = {
        **os.environ,
        **CDK_ENV,
        # A checkout other than the one the venv's editable install points at imports its own library.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(source / "constructs" / "src"), os.environ.get("PYTHONPATH")])),
    }
    cli = (node_modules or source / "node_modules") / ".bin" / "cdk"
    proc = subprocess.run(
        [str(cli), "synth", "--quiet", "-o", str(outdir)],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise SynthError(f"cdk synth in {source} failed:\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}")


class SynthError(RuntimeError):
    """`cdk synth` failed; the message carries the tail of its output."""


def export_ref(ref: str, dest: Path, repo: Path = ROOT) -> None:
    """The tree of git `ref` into `dest`, with this checkout's .venv and node_modules linked in."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SynthError(f"git archive {ref}: {archive.stderr.decode().strip()}")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for link in (".venv", "node_modules"):
        if not (dest / link).exists():
            (dest / link).symlink_to((repo / link).resolve())
