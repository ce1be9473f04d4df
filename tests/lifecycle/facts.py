"""Facts about an environment's templates that the order checks reason about, found by behaviour
(what a resource does), not by the logical ids or construct names of today's implementation."""

from __future__ import annotations

from tools.lifecycle import CUSTOM_TYPES, Environment, origins

Ref = tuple[str, str]  # (stack name, logical id)

# Credentials for a third party: a value this deploy generates cannot be one the third party accepts.
EXTERNAL_CREDENTIALS = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})


def of_type(env: Environment, *types: str) -> list[Ref]:
    """Resources of these types; a type ending in '::' (Custom::) stands for every type under it."""
    prefixes = tuple(t for t in types if t.endswith("::"))
    return [
        (s.name, lid)
        for s in env.values()
        for lid, r in s.resources.items()
        if r["Type"] in types or (prefixes and r["Type"].startswith(prefixes))
    ]


def resource(env: Environment, ref: Ref) -> dict:
    return env[ref[0]].resources[ref[1]]


def _containers(env: Environment, task: Ref) -> list[dict]:
    return resource(env, task).get("Properties", {}).get("ContainerDefinitions", [])


def _environment(container: dict) -> dict[str, object]:
    return {e["Name"]: e.get("Value") for e in container.get("Environment", [])}


def efs_volumes(env: Environment, task: Ref) -> set[str]:
    return {v["Name"] for v in resource(env, task).get("Properties", {}).get("Volumes", []) if "EFSVolumeConfiguration" in v}


def writes_efs(env: Environment, task: Ref) -> bool:
    """A container of the task mounts an EFS volume read-write."""
    volumes = efs_volumes(env, task)
    return any(
        m.get("SourceVolume") in volumes and not m.get("ReadOnly", False)
        for c in _containers(env, task)
        for m in c.get("MountPoints", [])
    )


def needs_filled_cache(env: Environment, task: Ref) -> bool:
    """The task serves from an EFS model cache it does not fill itself (read-only or offline)."""
    if not efs_volumes(env, task):
        return False
    offline = any(_environment(c).get("HF_HUB_OFFLINE") == "1" for c in _containers(env, task))
    return offline or not writes_efs(env, task)


def service_task(env: Environment, service: Ref) -> Ref | None:
    found = origins(env, service[0], resource(env, service).get("Properties", {}).get("TaskDefinition"))
    return next((r for r in found if resource(env, r)["Type"] == "AWS::ECS::TaskDefinition"), None)


def starting_services(env: Environment) -> list[Ref]:
    """ECS services that start tasks as soon as CloudFormation creates them."""
    return [s for s in of_type(env, "AWS::ECS::Service") if resource(env, s).get("Properties", {}).get("DesiredCount", 1) != 0]


def cache_fillers(env: Environment) -> list[Ref]:
    """Custom resources that run, during the deploy, a task writing to an EFS volume: whatever
    their implementation, they reach such a task definition through what they reference."""
    found = []
    for cr in of_type(env, *CUSTOM_TYPES):
        stack = env[cr[0]]
        reached = {(cr[0], lid) for lid in stack.closure(cr[1])}
        reached |= {o for lid in stack.closure(cr[1]) | {cr[1]} for o in origins(env, cr[0], stack.resources[lid].get("Properties", {}))}
        if any(resource(env, r)["Type"] == "AWS::ECS::TaskDefinition" and writes_efs(env, r) for r in reached):
            found.append(cr)
    return found


def tasks_run_by_deploy(env: Environment) -> list[Ref]:
    """Task definitions of starting services and of cache fillers."""
    tasks = {service_task(env, s) for s in starting_services(env)}
    for cr in cache_fillers(env):
        stack = env[cr[0]]
        tasks |= {(cr[0], lid) for lid in stack.closure(cr[1]) if stack.resources[lid]["Type"] == "AWS::ECS::TaskDefinition"}
    return sorted(t for t in tasks if t is not None)


def generated_external_credentials(env: Environment, task: Ref) -> list[str]:
    """Containers of `task` that use a third-party credential from a secret this deploy generates
    (GenerateSecretString), and would use it (not offline)."""
    found = []
    for c in _containers(env, task):
        if _environment(c).get("HF_HUB_OFFLINE") == "1":
            continue
        for secret in c.get("Secrets", []):
            if secret["Name"] not in EXTERNAL_CREDENTIALS:
                continue
            for src in origins(env, task[0], secret["ValueFrom"]):
                r = resource(env, src)
                if r["Type"] == "AWS::SecretsManager::Secret" and "GenerateSecretString" in r.get("Properties", {}):
                    found.append(f"{c['Name']}.{secret['Name']} <- {src[0]}/{src[1]} (generated)")
    return found
