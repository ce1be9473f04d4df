"""Teardown: CloudFormation deletes in the reverse order of creation (a resource before what it
references or DependsOn), CDK destroys stacks in reverse dependency order (docs/lifecycle.md)."""

from __future__ import annotations

from tests.lifecycle.facts import of_type, resource
from tools.lifecycle import CUSTOM_TYPES, Environment, created_before, origins, stack_closure


AUTO_DELETE = "Custom::S3AutoDeleteObjects"  # CDK's auto_delete_objects: empties the bucket on delete


def _fmt(ref: tuple[str, str]) -> str:
    return f"{ref[0]}/{ref[1]}"


def test_service_is_deleted_before_its_capacity_provider_association(assembly: dict[str, Environment]) -> None:
    """Otherwise the association's delete can run first and fail with 'capacity provider is in use'."""
    problems = []
    checked = 0
    for name, env in assembly.items():
        associations = of_type(env, "AWS::ECS::ClusterCapacityProviderAssociations")
        for service in of_type(env, "AWS::ECS::Service"):
            props = resource(env, service).get("Properties", {})
            providers = {o for s in props.get("CapacityProviderStrategy", []) for o in origins(env, service[0], s)}
            cluster = origins(env, service[0], props.get("Cluster"))
            for assoc in associations:
                a = resource(env, assoc).get("Properties", {})
                if origins(env, assoc[0], a.get("Cluster")) & cluster and origins(env, assoc[0], a.get("CapacityProviders")) & providers:
                    checked += 1
                    if not created_before(env, assoc, service):
                        problems.append(f"{name}: {_fmt(service)} does not depend on {_fmt(assoc)}")
    assert checked, "no service uses a capacity provider: nothing was checked"
    assert not problems, "\n".join(problems)


def test_scale_in_protected_instances_do_not_block_the_delete(assembly: dict[str, Environment]) -> None:
    """Managed termination protection keeps instances protected from scale-in, and deleting the
    capacity provider does not clear it (aws/containers-roadmap#2862, aws/aws-cdk#18179): the ASG
    delete hangs. Either nothing is protected, or something deleted before the ASG (a custom
    resource that references it) clears the protection. Checked where the environment is meant to
    be torn down: no stack has termination protection (a protected one is deleted deliberately, in steps)."""
    problems = []
    for name, env in assembly.items():
        if any(s.termination_protection for s in env.values()):
            continue
        protected_by_cp = {
            o
            for cp in of_type(env, "AWS::ECS::CapacityProvider")
            if (p := resource(env, cp)["Properties"].get("AutoScalingGroupProvider", {})).get("ManagedTerminationProtection") == "ENABLED"
            for o in origins(env, cp[0], p.get("AutoScalingGroupArn"))
        }
        for asg in of_type(env, "AWS::AutoScaling::AutoScalingGroup"):
            if not (resource(env, asg)["Properties"].get("NewInstancesProtectedFromScaleIn") or asg in protected_by_cp):
                continue
            cleaners = [cr for cr in of_type(env, *CUSTOM_TYPES) if created_before(env, asg, cr)]
            if not cleaners:
                problems.append(f"{name}: {_fmt(asg)} keeps scale-in protected instances and nothing clears them before its delete")
    assert not problems, "\n".join(problems)


def test_buckets_deleted_with_the_environment_are_emptied_first(assembly: dict[str, Environment]) -> None:
    """S3 refuses to delete a bucket that holds objects (AWS: DeletionPolicy attribute, "For Amazon S3
    buckets, you must delete all objects in the bucket for deletion to succeed"): a DeletionPolicy
    Delete bucket needs CDK's auto-delete custom resource for that very bucket, deleted before it
    (it depends on the bucket), or the teardown fails."""
    problems = []
    checked = 0
    for name, env in assembly.items():
        for bucket in of_type(env, "AWS::S3::Bucket"):
            if resource(env, bucket).get("DeletionPolicy", "Delete") != "Delete":
                continue
            checked += 1
            emptiers = [
                cr
                for cr in of_type(env, AUTO_DELETE)
                if bucket in origins(env, cr[0], resource(env, cr)["Properties"].get("BucketName"))
                and created_before(env, bucket, cr)
            ]
            if not emptiers:
                problems.append(f"{name}: {_fmt(bucket)} is deleted with the environment but never emptied")
    assert checked, "no environment deletes a bucket: nothing was checked"
    assert not problems, "\n".join(problems)


def test_stack_dependencies_have_no_cycle(assembly: dict[str, Environment]) -> None:
    for name, env in assembly.items():
        for stack in env:
            assert stack not in stack_closure(env, stack), f"{name}: {stack} depends on itself"
