"""First deploy from an empty account: what CloudFormation creates first, for every environment.

CloudFormation creates a resource after everything it references or DependsOn; CDK deploys a stack
after the stacks in its manifest dependencies (docs/lifecycle.md). A service whose tasks cannot
become healthy fails its stack through the deployment circuit breaker, and the first deploy rolls back.
"""

from __future__ import annotations

import pytest

from tests.lifecycle.facts import (
    cache_fillers,
    generated_external_credentials,
    needs_filled_cache,
    of_type,
    service_task,
    starting_services,
    tasks_run_by_deploy,
)
from tools.lifecycle import Environment, created_before, importers, stack_closure


def _fmt(ref: tuple[str, str]) -> str:
    return f"{ref[0]}/{ref[1]}"


def test_nothing_that_needs_the_cache_starts_before_it_is_filled(assembly: dict[str, Environment]) -> None:
    problems = []
    for name, env in assembly.items():
        fillers = cache_fillers(env)
        for service in starting_services(env):
            task = service_task(env, service)
            if task is None or not needs_filled_cache(env, task):
                continue
            if not any(created_before(env, f, service) for f in fillers):
                problems.append(
                    f"{name}: {_fmt(service)} serves from the EFS cache offline/read-only but nothing that fills it"
                    f" is created before it (fillers: {[_fmt(f) for f in fillers] or 'none'})"
                )
        for filler in fillers:
            for target in of_type(env, "AWS::EFS::MountTarget", "AWS::EFS::AccessPoint"):
                if not created_before(env, target, filler):
                    problems.append(f"{name}: {_fmt(filler)} may run its task before {_fmt(target)} exists")
    assert not problems, "\n".join(problems)


def test_no_task_the_deploy_starts_uses_a_credential_the_deploy_generates(assembly: dict[str, Environment]) -> None:
    """A random placeholder Hugging Face token is rejected by the Hub even for public models."""
    problems = [
        f"{name}: task {task[0]}/{task[1]}: {finding}"
        for name, env in assembly.items()
        for task in tasks_run_by_deploy(env)
        for finding in generated_external_credentials(env, task)
    ]
    assert not problems, "\n".join(problems)


def test_every_environment_starts_a_service_or_endpoint(assembly: dict[str, Environment]) -> None:
    """Guards the checks above against finding nothing to check."""
    for name, env in assembly.items():
        assert starting_services(env) or of_type(env, "AWS::SageMaker::Endpoint"), f"{name}: nothing serves"


def test_every_import_is_created_by_a_stack_deployed_first(assembly: dict[str, Environment]) -> None:
    """An import of an export whose stack is not a manifest dependency fails on a first deploy."""
    problems = []
    for name, env in assembly.items():
        producers = {export: s.name for s in env.values() for export in s.exports()}
        for export, consumers in importers(env).items():
            for consumer in consumers:
                if producers.get(export) not in stack_closure(env, consumer):
                    problems.append(f"{name}: {consumer} imports {export} from {producers.get(export)}, not a dependency")
    assert not problems, "\n".join(problems)
