"""LlmFrontDoor and RegionalWebAcl in a tiny stack with its own VPC and internal ALB."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk.assertions import Template

from llm_hosting_constructs.front_door import (
    DEFAULT_ROUTES,
    CustomDomainProps,
    LlmFrontDoor,
    Route,
    TenantPlan,
)
from tests.cfn import backend_path, only, resources

CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
TENANTS = [TenantPlan("a", 5, 10, 1000, "DAY"), TenantPlan("b", 2, 4)]


def parts() -> tuple[cdk.Stack, dict]:
    s = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    vpc = ec2.Vpc(s, "Vpc", max_azs=2, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    props = {
        "vpc": vpc,
        "subnets": ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        "security_group": ec2.SecurityGroup(s, "FrontDoorSg", vpc=vpc),
        "load_balancer": elbv2.ApplicationLoadBalancer(s, "Alb", vpc=vpc, internet_facing=False),
        "tenants": TENANTS,
    }
    return s, props


@pytest.fixture(scope="module")
def template() -> dict:
    s, props = parts()
    LlmFrontDoor(s, "FrontDoor", stage_name="dev", api_name="llm-dev", rate_limit=10, burst_limit=20, **props)
    return Template.from_stack(s).to_json()


def methods(template: dict) -> dict[str, dict]:
    """{'POST /v1/chat': method properties}."""
    paths = {k: v["Properties"]["PathPart"] for k, v in resources(template, "AWS::ApiGateway::Resource").items()}
    out = {}
    for m in resources(template, "AWS::ApiGateway::Method").values():
        props = m["Properties"]
        path = backend_path(props["Integration"])
        out[f"{props['HttpMethod']} {path}"] = props
        assert paths[props["ResourceId"]["Ref"]] == path.rsplit("/", 1)[1]
    return out


def test_exactly_the_routes_reach_the_backend(template: dict) -> None:
    assert sorted(methods(template)) == sorted(f"{r.method} {r.path}" for r in DEFAULT_ROUTES)


def test_private_integration_through_vpc_link_v2_to_the_alb(template: dict) -> None:
    link_id = next(iter(resources(template, "AWS::ApiGatewayV2::VpcLink")))
    alb_id = next(iter(resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")))
    for props in methods(template).values():
        integration = props["Integration"]
        assert integration["Type"] == "HTTP_PROXY"
        assert integration["ConnectionType"] == "VPC_LINK"
        assert integration["ConnectionId"] == {"Ref": link_id}
        assert integration["IntegrationTarget"] == {"Ref": alb_id}
        assert integration["Uri"]["Fn::Join"][1][1] == {"Fn::GetAtt": [alb_id, "DNSName"]}


def test_vpc_link_uses_the_front_door_security_group(template: dict) -> None:
    link = only(template, "AWS::ApiGatewayV2::VpcLink")["Properties"]
    sg_id = next(iter(resources(template, "AWS::EC2::SecurityGroup")))
    assert link["SecurityGroupIds"] == [{"Fn::GetAtt": [sg_id, "GroupId"]}]


def test_stream_routes_stream_and_the_rest_buffer_29s(template: dict) -> None:
    by_route = methods(template)
    for r in DEFAULT_ROUTES:
        integration = by_route[f"{r.method} {r.path}"]["Integration"]
        expected = ("STREAM", 900_000) if r.streaming else ("BUFFERED", 29_000)
        assert (integration["ResponseTransferMode"], integration["TimeoutInMillis"]) == expected, r.path


def test_backend_path_is_overridden_by_parameter_mapping_so_the_stage_never_reaches_it(template: dict) -> None:
    """AWS ("Private integrations for REST APIs in API Gateway"): a private integration gets the stage in
    its path unless parameter mapping overrides the path. Every route's URI path is made of path
    parameters, each mapped to a static segment of the route, so the backend gets the route itself."""
    for route, props in methods(template).items():
        integration = props["Integration"]
        uri_tail = integration["Uri"]["Fn::Join"][1][-1]
        assert uri_tail == ":80" + "".join(f"/{{seg{i}}}" for i in range(route.count("/"))), route
        overrides = {k: v for k, v in integration["RequestParameters"].items() if k.startswith("integration.request.path.")}
        assert overrides and all(v.startswith("'") and "dev" not in v for v in overrides.values()), route
        assert backend_path(integration) == route.split(" ")[1]


def test_nothing_that_streaming_cannot_do(template: dict) -> None:
    """Streaming integrations support no content encoding and no endpoint cache."""
    assert "MinimumCompressionSize" not in only(template, "AWS::ApiGateway::RestApi")["Properties"]
    stage = only(template, "AWS::ApiGateway::Stage")["Properties"]
    assert not stage.get("CacheClusterEnabled") and all(not m.get("CachingEnabled") for m in stage["MethodSettings"])


def test_every_method_requires_an_api_key(template: dict) -> None:
    assert all(p["ApiKeyRequired"] is True for p in methods(template).values())
    assert only(template, "AWS::ApiGateway::RestApi")["Properties"]["ApiKeySourceType"] == "HEADER"


def test_usage_plan_per_tenant_with_its_limits(template: dict) -> None:
    plans = {p["Properties"]["UsagePlanName"]: p["Properties"] for p in resources(template, "AWS::ApiGateway::UsagePlan").values()}
    assert plans["a"]["Throttle"] == {"RateLimit": 5, "BurstLimit": 10}
    assert plans["a"]["Quota"] == {"Limit": 1000, "Period": "DAY"}
    assert plans["b"]["Throttle"] == {"RateLimit": 2, "BurstLimit": 4} and "Quota" not in plans["b"]
    assert len(resources(template, "AWS::ApiGateway::ApiKey")) == 2
    assert len(resources(template, "AWS::ApiGateway::UsagePlanKey")) == 2


def test_stage_throttles_traces_and_logs_json(template: dict) -> None:
    stage = only(template, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "dev" and stage["TracingEnabled"] is True
    settings = stage["MethodSettings"][0]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (10, 20)
    assert settings["DataTraceEnabled"] is False and settings["LoggingLevel"] == "ERROR"
    fields = json.loads(stage["AccessLogSetting"]["Format"])
    assert fields["status"] == "$context.status" and fields["apiKeyId"] == "$context.identity.apiKeyId"


def test_access_and_execution_log_groups_are_kms_encrypted_and_expire(template: dict) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    assert len(groups) == 2
    for group in groups.values():
        assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 90
        assert group["DeletionPolicy"] == "Retain"


def test_execution_log_group_exists_before_the_stage_with_api_gateways_name(template: dict) -> None:
    """API Gateway logs to API-Gateway-Execution-Logs_{rest-api-id}/{stage} and creates the group itself,
    without retention, unless it exists first."""
    (exec_id, group), = [(k, g) for k, g in resources(template, "AWS::Logs::LogGroup").items() if "LogGroupName" in g["Properties"]]
    api_id = next(iter(resources(template, "AWS::ApiGateway::RestApi")))
    assert group["Properties"]["LogGroupName"] == {"Fn::Join": ["", ["API-Gateway-Execution-Logs_", {"Ref": api_id}, "/dev"]]}
    (stage,) = resources(template, "AWS::ApiGateway::Stage").values()
    assert exec_id in stage["DependsOn"]


def test_429s_become_a_metric_matching_the_string_the_access_log_writes(template: dict) -> None:
    """The access log is JSON with "status":"$context.status" (a string): a numeric filter
    `{ $.status = 429 }` never matches "429" (AWS: "Using filter patterns to match terms in JSON log
    events": string values are quoted)."""
    f = only(template, "AWS::Logs::MetricFilter")["Properties"]
    assert f["FilterPattern"] == '{ $.status = "429" }'
    assert f["MetricTransformations"][0]["Dimensions"] == [{"Key": "ApiId", "Value": "$.apiId"}]
    log_format = only(template, "AWS::ApiGateway::Stage")["Properties"]["AccessLogSetting"]["Format"]
    line = json.loads(log_format.replace("$context.status", "429").replace("$context.", "x"))
    assert line["status"] == "429"


def test_custom_domain_with_alias_record() -> None:
    s, props = parts()
    zone = route53.HostedZone.from_hosted_zone_attributes(s, "Zone", hosted_zone_id="Z123", zone_name="example.com")
    cert = acm.Certificate.from_certificate_arn(s, "Cert", CERT)
    fd = LlmFrontDoor(s, "FrontDoor", custom_domain=CustomDomainProps("llm.example.com", cert, zone), **props)
    t = Template.from_stack(s).to_json()
    domain = only(t, "AWS::ApiGateway::DomainName")["Properties"]
    assert domain["RegionalCertificateArn"] == CERT and domain["SecurityPolicy"] == "TLS_1_2"
    assert only(t, "AWS::Route53::RecordSet")["Properties"]["Name"] == "llm.example.com."
    assert len(resources(t, "AWS::ApiGateway::BasePathMapping")) == 1
    assert fd.url == "https://llm.example.com/"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"tenants": []}, "at least one tenant"),
        ({"tenants": [TenantPlan("a", 1, 1), TenantPlan("a", 1, 1)]}, "^LlmFrontDoor: tenant names must be unique; duplicated: a$"),
        ({"tenants": [TenantPlan("a", 100, 1)]}, "exceeds"),
        ({"routes": [Route("/v1/x/", "GET", False)]}, "route paths"),
        ({"stream_timeout": cdk.Duration.minutes(20)}, "stream_timeout"),
        ({"backend_port": 0}, "not a port"),
    ],
)
def test_contradictory_props_are_rejected(change: dict, message: str) -> None:
    s, props = parts()
    with pytest.raises(ValueError, match=message):
        LlmFrontDoor(s, "FrontDoor", **{**props, **change})


def test_log_key_serves_only_cloudwatch_logs_of_this_account_and_region(template: dict) -> None:
    statements = only(template, "AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    (logs_statement,) = [s for s in statements if s.get("Sid") == "CloudWatchLogsOfThisAccountAndRegion"]
    assert logs_statement["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    arn = json.dumps(logs_statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert ":logs:eu-west-1:123456789012:log-group:*" in arn


def test_backend_bearer_replaces_the_client_authorization_on_every_route() -> None:
    s, props = parts()
    bearer = cdk.SecretValue.secrets_manager("arn:aws:secretsmanager:eu-west-1:123456789012:secret:gw-AbCdEf", json_field="frontdoor")
    LlmFrontDoor(s, "FrontDoor", backend_bearer=bearer, **props)
    t = Template.from_stack(s).to_json()
    for props_ in methods(t).values():
        header = props_["Integration"]["RequestParameters"]["integration.request.header.Authorization"]
        assert header == "'Bearer {{resolve:secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:gw-AbCdEf:SecretString:frontdoor::}}'"


def test_no_authorization_header_without_a_bearer(template: dict) -> None:
    assert all(
        "integration.request.header.Authorization" not in p["Integration"]["RequestParameters"]
        for p in methods(template).values()
    )


# --- issue 13: every OpenAI/vLLM route, and who the caller is -----------------------------------

ISSUE_13_ROUTES = {
    # (method path): streams?
    "POST /v1/responses": True,
    "POST /tokenize": False,
    "POST /detokenize": False,
    "GET /version": False,
    "POST /v1/embeddings": False,
    "POST /v1/score": False,
    "POST /v1/rerank": False,
}


def test_responses_tokenizer_version_and_pooling_routes_exist(template: dict) -> None:
    by_route = methods(template)
    for route, streams in ISSUE_13_ROUTES.items():
        integration = by_route[route]["Integration"]
        assert integration["ResponseTransferMode"] == ("STREAM" if streams else "BUFFERED"), route
        assert backend_path(integration) == route.split(" ")[1]


def test_every_route_passes_the_callers_api_key_id(template: dict) -> None:
    for route, props in methods(template).items():
        mapping = props["Integration"]["RequestParameters"]
        assert mapping["integration.request.header.x-llmhost-api-key-id"] == "context.identity.apiKeyId", route


def test_api_key_id_header_name_is_a_prop_and_can_be_off() -> None:
    for header, expected in (("x-tenant-key", {"integration.request.header.x-tenant-key"}), (None, set())):
        s, props = parts()
        LlmFrontDoor(s, "FrontDoor", api_key_id_header=header, **props)
        for props_ in methods(Template.from_stack(s).to_json()).values():
            headers = {k for k in props_["Integration"]["RequestParameters"] if k.startswith("integration.request.header.")}
            assert headers == expected


def test_tenant_key_map_parameter_maps_each_key_id_to_its_tenant() -> None:
    s, props = parts()
    LlmFrontDoor(s, "FrontDoor", tenant_key_map_parameter_name="/llm-hosting/dev/tenant-api-keys", **props)
    t = Template.from_stack(s).to_json()
    param = only(t, "AWS::SSM::Parameter")["Properties"]
    assert param["Name"] == "/llm-hosting/dev/tenant-api-keys" and param["Type"] == "String"
    keys = {v["Properties"]["Description"].rsplit(" ", 1)[1]: k for k, v in resources(t, "AWS::ApiGateway::ApiKey").items()}
    # Resolve the Fn::Join as CloudFormation would, with each key's Ref as a made-up id.
    def resolve(node: object) -> str:
        if isinstance(node, str):
            return node
        if "Ref" in node:
            return f"id-{node['Ref']}"
        sep, parts_ = node["Fn::Join"]
        return sep.join(resolve(x) for x in parts_)
    assert json.loads(resolve(param["Value"])) == {f"id-{keys[t_.name]}": t_.name for t_ in TENANTS}


def test_no_tenant_key_map_unless_named(template: dict) -> None:
    assert not resources(template, "AWS::SSM::Parameter")


def test_https_backend_needs_the_certificates_host_name() -> None:
    s, props = parts()
    with pytest.raises(ValueError, match="tls_host_name"):
        LlmFrontDoor(s, "FrontDoor", backend_protocol="https", backend_port=443, **props)
    LlmFrontDoor(s, "Ok", backend_protocol="https", backend_port=443, tls_host_name="alb.example.com", **props)
    uris = {m["Properties"]["Integration"]["Uri"] for m in resources(Template.from_stack(s).to_json(), "AWS::ApiGateway::Method").values()}
    assert all(u.startswith("https://alb.example.com:443/{seg0}") for u in uris)
