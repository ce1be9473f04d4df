"""Resource-level checkov skips, for findings that depend on a prop (an HTTP listener, no access logs).

checkov reads ``Metadata.checkov.skip`` of a CloudFormation resource; a skip written here holds
for that one resource only, so the same check still guards every other resource of the app.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Validations
from constructs import IConstruct

MIN_REASON = 30


def skip_checkov(construct: IConstruct, check_id: str, reason: str) -> None:
    """Skip ``check_id`` on ``construct``'s CloudFormation resource (its default child when an L2)."""
    if len(reason.strip()) < MIN_REASON:
        raise ValueError(f"skip_checkov: the reason for {check_id} must be specific (>= {MIN_REASON} characters)")
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise ValueError(f"skip_checkov: {construct.node.path} has no CloudFormation resource")
    metadata = resource.get_metadata("checkov") or {"skip": []}
    skips = [s for s in metadata["skip"] if s["id"] != check_id] + [{"id": check_id, "comment": reason}]
    resource.add_metadata("checkov", {"skip": skips})


def acknowledge_finding(construct: IConstruct, reason: str, *, aws_solutions_rule: str, checkov_check: str) -> None:
    """One finding as cdk-nag's AwsSolutions pack (``aws_solutions_rule``, e.g. ``S1``) and checkov
    (``checkov_check``) each name it, acknowledged on ``construct`` with the same ``reason``."""
    Validations.of(construct).acknowledge(
        Acknowledgment(id=f"AwsSolutions::AwsSolutions-{aws_solutions_rule}", reason=reason)
    )
    skip_checkov(construct, checkov_check, reason)
