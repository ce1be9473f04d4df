"""A regional WAF web ACL for a public API: AWS managed rule groups plus a per-IP rate limit."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Names, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from .log_groups import encrypted_log_group

DEFAULT_MANAGED_RULE_GROUPS: tuple[str, ...] = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
)
"""Common (OWASP-style) rules, known bad inputs (Log4Shell & co.), and Amazon's IP reputation list."""

BODY_RULES: dict[str, tuple[str, ...]] = {
    "AWSManagedRulesCommonRuleSet": (
        "SizeRestrictions_BODY",
        "EC2MetaDataSSRF_BODY",
        "GenericLFI_BODY",
        "GenericRFI_BODY",
        "CrossSiteScripting_BODY",
    ),
    "AWSManagedRulesKnownBadInputsRuleSet": ("JavaDeserializationRCE_BODY", "Log4JRCE_BODY"),
}
"""Every rule of the default groups that inspects the request body (AWS: "AWS Managed Rules rule
groups list", Baseline rule groups; the IP reputation group inspects no body).

An LLM API's request body is a prompt: code, HTML, file paths, URLs, security questions. In Block
mode these rules reject ordinary prompts (a React component is "XSS", `../../etc/passwd` in a shell
transcript is "LFI", a question about the metadata URL is "SSRF", a prompt over 8 KB is too big), so
they count instead: WAF still labels and logs the match, and the rules that inspect the URI path,
query string, headers and cookies keep blocking. The body is validated by the gateway (schema, size,
token caps) and never executed or rendered by the backend."""

REDACTED_HEADERS: tuple[str, ...] = ("x-api-key", "authorization")
"""Headers WAF logs never contain: API keys and bearer tokens."""


class RegionalWebAcl(Construct):
    """WAF web ACL (scope REGIONAL) to associate with an API Gateway stage or an ALB.

    Safe defaults: the three AWS managed rule groups in `managed_rule_groups`, with
    `count_only` rules set to count (by default the rules that inspect the request body,
    `BODY_RULES`: on an LLM API the body is a prompt, which they would block); every other rule
    blocks; a rate-based rule blocking a client IP above `rate_limit`
    requests per 5 minutes; default action allow; CloudWatch metrics and sampled requests
    on; full logs to a KMS-encrypted log group kept `log_retention`, with the API key and
    Authorization headers redacted.

    Attributes: `web_acl`, `log_group`, `log_key`. Associate with `associate(id, resource_arn)`.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        rate_limit: int = 2000,
        managed_rule_groups: Sequence[str] = DEFAULT_MANAGED_RULE_GROUPS,
        count_only: dict[str, Sequence[str]] | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        log_key: kms.IKey | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if not 100 <= rate_limit <= 2_000_000_000:
            raise ValueError(f"RegionalWebAcl: rate_limit {rate_limit} is outside 100..2,000,000,000 per 5 minutes")
        if len(set(managed_rule_groups)) != len(managed_rule_groups):
            raise ValueError("RegionalWebAcl: managed_rule_groups lists a group twice")
        if count_only is None:
            count_only = {g: rules for g, rules in BODY_RULES.items() if g in managed_rule_groups}
        unknown = sorted(set(count_only) - set(managed_rule_groups))
        if unknown:
            raise ValueError(f"RegionalWebAcl: count_only names groups that are not used: {', '.join(unknown)}")

        prefix = Names.unique_id(self)[-40:]
        rules: list[wafv2.CfnWebACL.RuleProperty] = []
        for priority, group in enumerate(managed_rule_groups):
            overrides = [
                wafv2.CfnWebACL.RuleActionOverrideProperty(
                    name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                )
                for rule in count_only.get(group, ())
            ]
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=group,
                    priority=priority,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=group, rule_action_overrides=overrides or None
                        )
                    ),
                    visibility_config=_visibility(group),
                )
            )
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="RatePerIp",
                priority=len(rules),
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=rate_limit, aggregate_key_type="IP", evaluation_window_sec=300
                    )
                ),
                visibility_config=_visibility("RatePerIp"),
            )
        )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            rules=rules,
            visibility_config=_visibility(prefix),
        )

        # WAF delivers only to log groups whose name starts with aws-waf-logs-.
        self.log_key, self.log_group = encrypted_log_group(
            self,
            "Logs",
            retention=log_retention,
            removal_policy=removal_policy,
            key=log_key,
            key_description="Encrypts the WAF log group",
            log_group_name=f"aws-waf-logs-{prefix}",
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            # WAF wants the log group ARN without the trailing ':*' that `log_group_arn` carries.
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=self.log_group.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": h}) for h in REDACTED_HEADERS
            ],
        )

    def associate(self, id_: str, resource_arn: str) -> wafv2.CfnWebACLAssociation:
        """Attach the web ACL to a regional resource (API Gateway stage ARN, ALB ARN)."""
        return wafv2.CfnWebACLAssociation(self, id_, resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn)


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )
