"""Later deploys: each plausible config change, synthesized before and after, judged by CloudFormation's
rules (createOnlyProperties from the resource schemas cfn-lint ships; exports in use cannot change).

Run with `-s` (or see a failure) for the full report of each change: every resource added, removed,
updated and replaced, with the create-only property that forces each replacement.
"""

from __future__ import annotations

import pytest

from tests.lifecycle.changes import CHANGES, Applied
from tests.lifecycle.facts import cache_fillers
from tools.lifecycle import Environment, diff_environment, exporter, importers, origins, render

# What a port, protocol, description or name change replaces (createOnlyProperties): an export of one
# of these, imported by another stack, blocks that change ("Export ... cannot be updated as it is in use").
REPLACEABLE_BEHIND_EXPORTS = (
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::EC2::SecurityGroup",
    "AWS::ECS::Service",
)




def test_at_least_ten_changes_are_exercised(applied: dict[str, Applied]) -> None:
    assert len(applied) >= 10 and set(applied) == {c.name for c in CHANGES}


@pytest.mark.parametrize("change", [c.name for c in CHANGES])
def test_config_change_updates_without_losing_state_or_breaking_exports(
    assembly: dict[str, Environment], applied: dict[str, Applied], change: str
) -> None:
    a = applied[change]
    diff = diff_environment(a.environment, assembly[a.environment], a.after)
    report = render([diff])
    print(f"--- {change} in {a.environment}\n{report}")
    assert diff.changes, f"{change} changed nothing in {a.environment}: the change is not exercised"
    assert not diff.blocking, report


def test_model_revision_change_refills_the_cache(assembly: dict[str, Environment], applied: dict[str, Applied]) -> None:
    """The filler must be updated (CloudFormation sends Update to a custom resource whose properties
    change), or the service restarts on a cache that holds only the old revision."""
    a = applied["model-revision"]
    diff = diff_environment(a.environment, assembly[a.environment], a.after)
    fillers = set(cache_fillers(a.after))
    touched = {(c.stack, c.logical_id) for c in diff.changes if c.action in ("update", "replace")}
    assert fillers, f"{a.environment}: nothing fills the cache"
    assert fillers & touched, f"{a.environment}: no cache filler changes with model.revision ({sorted(fillers)})"


def test_no_stack_imports_a_value_of_a_replaceable_resource(assembly: dict[str, Environment]) -> None:
    problems = []
    for name, env in assembly.items():
        for export, consumers in sorted(importers(env).items()):
            producer = exporter(env, export)
            assert producer is not None, f"{name}: {export} is imported but nothing exports it"
            for stack, lid in origins(env, producer[0].name, producer[1]):
                kind = env[stack].resources[lid]["Type"]
                if kind in REPLACEABLE_BEHIND_EXPORTS:
                    problems.append(f"{name}: {', '.join(sorted(consumers))} import(s) {export} of {kind} {stack}/{lid}")
    assert not problems, "\n".join(problems)
