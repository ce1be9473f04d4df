"""The API stack of every environment, read from the synthesized templates."""

from __future__ import annotations

import json

import pytest

from config.schema import load_all
from llm_hosting_constructs.front_door import ACCESS_LOG_FIELDS, DEFAULT_ROUTES
from llm_hosting_constructs.waf import DEFAULT_MANAGED_RULE_GROUPS
from llmhost import outputs, parameters
from tests.cfn import CONFIG_DIR, ENVIRONMENTS, backend_path, count_overrides, only, resources

pytestmark = pytest.mark.synth
CONFIG = {c.name: c for c in load_all(CONFIG_DIR)}


def api(templates: dict, env: str) -> dict:
    return templates[env][outputs.stack_name(env, outputs.API)]


def routes(template: dict) -> dict[str, dict]:
    """{'POST /v1/chat/completions': integration} from each method's resource chain."""
    res = resources(template, "AWS::ApiGateway::Resource")

    def path(ref: dict) -> str:
        node = res[ref["Ref"]]["Properties"]
        parent = node["ParentId"]
        prefix = path(parent) if "Ref" in parent and parent["Ref"] in res else ""
        return f"{prefix}/{node['PathPart']}"

    return {
        f"{m['Properties']['HttpMethod']} {path(m['Properties']['ResourceId'])}": m["Properties"]
        for m in resources(template, "AWS::ApiGateway::Method").values()
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_regional_rest_api_named_per_environment(templates: dict, env: str) -> None:
    props = only(api(templates, env), "AWS::ApiGateway::RestApi")["Properties"]
    assert props["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert props["Name"] == f"llm-hosting-{env}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_declared_routes_exist(templates: dict, env: str) -> None:
    expected = {f"{r.method} {r.path}" for r in DEFAULT_ROUTES}
    assert expected == {
        "POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models", "POST /v1/chat", "POST /v1/chat/stream",
        "POST /v1/responses", "POST /tokenize", "POST /detokenize", "GET /version", "POST /v1/embeddings",
        "POST /v1/score", "POST /v1/rerank", "GET /health",
    }
    assert set(routes(api(templates, env))) == expected


def ssm_parameter(t: dict, value: dict) -> str:
    """The SSM parameter name behind ``{"Ref": <template parameter>}`` (read at deploy, not imported)."""
    parameter = t["Parameters"][value["Ref"]]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    return parameter["Default"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_integration_is_private_via_vpc_link_v2_to_the_serving_alb(templates: dict, env: str) -> None:
    t = api(templates, env)
    link_id = next(iter(resources(t, "AWS::ApiGatewayV2::VpcLink")))
    for route, method in routes(t).items():
        integration = method["Integration"]
        assert integration["Type"] == "HTTP_PROXY", route
        assert integration["ConnectionType"] == "VPC_LINK"
        assert integration["ConnectionId"] == {"Ref": link_id}
        assert integration["IntegrationHttpMethod"] == method["HttpMethod"]
        assert ssm_parameter(t, integration["IntegrationTarget"]) == parameters.name(env, parameters.ALB_ARN)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_vpc_link_uses_the_serving_front_door_security_group(templates: dict, env: str) -> None:
    t = api(templates, env)
    link = only(t, "AWS::ApiGatewayV2::VpcLink")["Properties"]
    (group,) = link["SecurityGroupIds"]
    assert ssm_parameter(t, group) == parameters.name(env, parameters.FRONTDOOR_SECURITY_GROUP_ID)
    assert len(link["SubnetIds"]) == len(CONFIG[env].availability_zones)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backend_path_is_the_route_path_set_by_parameter_mapping(templates: dict, env: str) -> None:
    """API Gateway prefixes the stage for private integrations unless parameter mapping overrides the path."""
    for route, method in routes(api(templates, env)).items():
        integration = method["Integration"]
        uri = integration["Uri"]
        tail = uri["Fn::Join"][1][-1] if isinstance(uri, dict) else uri
        assert "{seg0}" in tail and "/v1" not in tail, route
        assert backend_path(integration) == route.split(" ")[1], route


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_confidential_environments_reach_the_alb_over_verified_https(templates: dict, env: str) -> None:
    """Issue 11.9: prod (data-classification confidential) sent prompts and the front-door key over HTTP.
    AWS ("Private integrations for REST APIs in API Gateway"): HTTPS needs an https URI whose host is the
    certificate's name; the certificate must come from a supported (public) CA unless
    insecureSkipVerification, which is never set here."""
    cfg = CONFIG[env]
    confidential = cfg.tags.get("data-classification") == "confidential"
    if confidential:
        assert cfg.ecs.certificate_arn and cfg.ecs.tls_host_name
    for route, method in routes(api(templates, env)).items():
        integration = method["Integration"]
        assert "TlsConfig" not in integration, route
        uri = integration["Uri"]
        if cfg.ecs.certificate_arn:
            assert isinstance(uri, str) and uri.startswith(f"https://{cfg.ecs.tls_host_name}:443/"), route
        else:
            parts = uri["Fn::Join"][1]
            assert parts[0] == "http://" and parts[2].startswith(":80/"), route
            assert ssm_parameter(api(templates, env), parts[1]) == parameters.name(env, parameters.ALB_DNS_NAME)
    serving = templates[env][outputs.stack_name(env, outputs.SERVING)]
    (listener,) = resources(serving, "AWS::ElasticLoadBalancingV2::Listener").values()
    expected = ("HTTPS", 443) if cfg.ecs.certificate_arn else ("HTTP", 80)
    assert (listener["Properties"]["Protocol"], listener["Properties"]["Port"]) == expected
    if confidential:
        assert listener["Properties"]["Certificates"] == [{"CertificateArn": cfg.ecs.certificate_arn}]
        assert listener["Properties"]["SslPolicy"].startswith("ELBSecurityPolicy-TLS")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_streaming_routes_stream_for_the_configured_time(templates: dict, env: str) -> None:
    by_route = routes(api(templates, env))
    for r in DEFAULT_ROUTES:
        integration = by_route[f"{r.method} {r.path}"]["Integration"]
        if r.streaming:
            assert integration["ResponseTransferMode"] == "STREAM", r.path
            assert integration["TimeoutInMillis"] == CONFIG[env].api.stream_timeout_seconds * 1000
        else:
            assert integration["ResponseTransferMode"] == "BUFFERED", r.path
            assert integration["TimeoutInMillis"] == 29_000


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_method_requires_an_api_key(templates: dict, env: str) -> None:
    assert all(m["ApiKeyRequired"] is True for m in routes(api(templates, env)).values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_key_and_usage_plan_per_tenant(templates: dict, env: str) -> None:
    t = api(templates, env)
    plans = {p["Properties"]["UsagePlanName"]: p["Properties"] for p in resources(t, "AWS::ApiGateway::UsagePlan").values()}
    tenants = CONFIG[env].api.tenants
    assert set(plans) == {x.name for x in tenants}
    for tenant in tenants:
        plan = plans[tenant.name]
        assert plan["Throttle"] == {"RateLimit": tenant.rate_limit, "BurstLimit": tenant.burst_limit}
        assert plan.get("Quota") == ({"Limit": tenant.quota.limit, "Period": tenant.quota.period} if tenant.quota else None)
        assert len(plan["ApiStages"]) == 1
    assert len(resources(t, "AWS::ApiGateway::ApiKey")) == len(tenants)
    assert len(resources(t, "AWS::ApiGateway::UsagePlanKey")) == len(tenants)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_stage_default_throttling_and_tracing(templates: dict, env: str) -> None:
    stage = only(api(templates, env), "AWS::ApiGateway::Stage")["Properties"]
    (settings,) = stage["MethodSettings"]
    assert settings["HttpMethod"] == "*" and settings["ResourcePath"] == "/*"
    assert settings["ThrottlingRateLimit"] == CONFIG[env].api.rate_limit
    assert settings["ThrottlingBurstLimit"] == CONFIG[env].api.burst_limit
    assert settings["DataTraceEnabled"] is False  # no request/response bodies in execution logs
    assert stage["TracingEnabled"] is True and stage["StageName"] == env


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_access_logs_are_json_to_a_kms_encrypted_group_with_retention(templates: dict, env: str) -> None:
    t = api(templates, env)
    stage = only(t, "AWS::ApiGateway::Stage")["Properties"]
    assert json.loads(stage["AccessLogSetting"]["Format"]) == ACCESS_LOG_FIELDS
    groups = resources(t, "AWS::Logs::LogGroup")
    group_id = "FrontDoorAccessLogs5339A6AD"  # pinned: renaming it would replace the log group
    # The ARN as API Gateway stores it, without the ':*' of the log group's Arn attribute, so drift
    # detection does not report the stage as modified (@aws-cdk/aws-apigateway:logGroupDestinationArnWithoutWildcard).
    cfg = CONFIG[env]
    assert stage["AccessLogSetting"]["DestinationArn"] == {
        "Fn::Join": ["", [f"arn:aws:logs:{cfg.region}:{cfg.account}:log-group:", {"Ref": group_id}]]
    }
    group = groups[group_id]
    assert group["Properties"]["RetentionInDays"] == CONFIG[env].api.access_log_retention_days
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["FrontDoorLogKey9799C4ED", "Arn"]}
    assert group["DeletionPolicy"] == ("Retain" if CONFIG[env].retain_stateful else "Delete")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_waf_follows_config(templates: dict, env: str) -> None:
    t = api(templates, env)
    acls = resources(t, "AWS::WAFv2::WebACL")
    if not CONFIG[env].api.waf_enabled:
        assert not acls and not resources(t, "AWS::WAFv2::WebACLAssociation")
        return
    (acl,) = acls.values()
    rules = acl["Properties"]["Rules"]
    groups = [r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in rules if "ManagedRuleGroupStatement" in r["Statement"]]
    assert groups == list(DEFAULT_MANAGED_RULE_GROUPS)
    (rate,) = [r["Statement"]["RateBasedStatement"] for r in rules if "RateBasedStatement" in r["Statement"]]
    assert rate["Limit"] == CONFIG[env].api.waf_rate_limit and rate["AggregateKeyType"] == "IP"
    # prompts are bodies: every body-inspecting managed rule counts (tests/constructs/test_waf.py says why)
    assert count_overrides(acl["Properties"]) == {
        "AWSManagedRulesCommonRuleSet": {
            "SizeRestrictions_BODY", "EC2MetaDataSSRF_BODY", "GenericLFI_BODY", "GenericRFI_BODY",
            "CrossSiteScripting_BODY",
        },
        "AWSManagedRulesKnownBadInputsRuleSet": {"JavaDeserializationRCE_BODY", "Log4JRCE_BODY"},
        "AWSManagedRulesAmazonIpReputationList": set(),
    }
    # pinned: the WAF log group and its key are stateful
    assert {"WafLogs5C6BB543", "WafLogKeyD1F91AE4"} <= set(t["Resources"])
    association = only(t, "AWS::WAFv2::WebACLAssociation")["Properties"]
    assert "Stage" in json.dumps(association["ResourceArn"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_are_the_url_and_key_ids_never_values(templates: dict, env: str) -> None:
    t = api(templates, env)
    outs = t["Outputs"]
    assert outputs.API_URL in outs and outputs.API_KEY_IDS in outs
    key_ids = set(resources(t, "AWS::ApiGateway::ApiKey"))
    value = outs[outputs.API_KEY_IDS]["Value"]
    refs = [value] if "Ref" in value else value["Fn::Join"][1]  # one key: CDK folds the join into a Ref
    assert "Fn::Join" not in value or value["Fn::Join"][0] == ","
    assert {ref["Ref"] for ref in refs} == key_ids  # Ref of an ApiKey is its id; no GetAtt of a value
    stage_id = next(iter(resources(t, "AWS::ApiGateway::Stage")))
    url = outs[outputs.API_URL]["Value"]["Fn::Join"][1]
    assert url[0] == "https://" and {"Ref": stage_id} in url and url[-1] == "/"
    assert set(outs) == {outputs.API_URL, outputs.API_KEY_IDS, outputs.API_BACKEND_SECURITY_GROUP}  # no exports (issue 11)
    assert ssm_parameter(t, outs[outputs.API_BACKEND_SECURITY_GROUP]["Value"]) == parameters.name(env, parameters.ALB_SECURITY_GROUP_ID)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_custom_domain_unless_configured(templates: dict, env: str) -> None:
    t = api(templates, env)
    assert bool(resources(t, "AWS::ApiGateway::DomainName")) == (CONFIG[env].api.custom_domain is not None)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_alb_accepts_traffic_only_from_the_vpc_link_group(templates: dict, env: str) -> None:
    """The VPC link's security group is the one the serving stack publishes, and the ALB's only ingress source."""
    serving = templates[env][outputs.stack_name(env, outputs.SERVING)]
    t = api(templates, env)
    (link_group,) = only(t, "AWS::ApiGatewayV2::VpcLink")["Properties"]["SecurityGroupIds"]
    name = ssm_parameter(t, link_group)
    (published,) = [r["Properties"]["Value"] for r in resources(serving, "AWS::SSM::Parameter").values() if r["Properties"]["Name"] == name]
    frontdoor_group = published["Fn::GetAtt"][0]
    (alb,) = resources(serving, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    alb_groups = {g["Fn::GetAtt"][0] for g in alb["Properties"]["SecurityGroups"]}
    inline = [r for g in alb_groups for r in serving["Resources"][g]["Properties"].get("SecurityGroupIngress", [])]
    assert not inline, "the ALB group has inline ingress rules"
    sources = [
        r["Properties"].get("SourceSecurityGroupId", r["Properties"].get("CidrIp"))
        for r in resources(serving, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"].get("Fn::GetAtt", [None])[0] in alb_groups
    ]
    assert sources == [{"Fn::GetAtt": [frontdoor_group, "GroupId"]}]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backend_gets_the_gateway_front_door_key_not_the_tenant_key(templates: dict, env: str) -> None:
    """Every route sends `Authorization: Bearer <the key the API-keys secret generates>`, resolved by CloudFormation."""
    secrets = resources(templates[env][outputs.stack_name(env, outputs.MODEL_CACHE)], "AWS::SecretsManager::Secret")
    (key_id,) = [g["GenerateStringKey"] for r in secrets.values() if "GenerateStringKey" in (g := r["Properties"].get("GenerateSecretString", {}))]  # fmt: skip

    for route, method in routes(api(templates, env)).items():
        header = method["Integration"]["RequestParameters"]["integration.request.header.Authorization"]
        parts = header["Fn::Join"][1]
        assert parts[0] == "'Bearer {{resolve:secretsmanager:", route
        assert "Fn::ImportValue" in parts[1] and "ApiKeys" in json.dumps(parts[1])
        assert parts[2] == f":SecretString:{key_id}::}}}}'"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backend_gets_the_callers_api_key_id_on_every_route(templates: dict, env: str) -> None:
    for route, method in routes(api(templates, env)).items():
        mapping = method["Integration"]["RequestParameters"]
        assert mapping["integration.request.header.x-llmhost-api-key-id"] == "context.identity.apiKeyId", route


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_tenant_key_map_parameter_names_every_tenant(templates: dict, env: str) -> None:
    t = api(templates, env)
    (param,) = [
        p["Properties"] for p in resources(t, "AWS::SSM::Parameter").values()
        if p["Properties"]["Name"] == f"/llm-hosting/{env}/tenant-api-keys"
    ]
    value = json.dumps(param["Value"])
    key_ids = set(resources(t, "AWS::ApiGateway::ApiKey"))
    assert {r for r in key_ids if json.dumps({"Ref": r}) in value} == key_ids
    for tenant in CONFIG[env].api.tenants:
        assert json.dumps(f'":{json.dumps(tenant.name)}')[1:-1] in value


def test_serving_and_api_stacks_are_termination_protected_where_stateful_is_retained(cdk_out) -> None:
    """Issue 11.10: prod's serving and api stacks could be deleted by one command."""
    for env in ENVIRONMENTS:
        manifest = json.loads((cdk_out / f"assembly-{env}" / "manifest.json").read_text())
        for name in (outputs.SERVING, outputs.API):
            (stack,) = [a for a in manifest["artifacts"].values() if a.get("displayName") == f"{env}/{name}"]
            assert stack["properties"].get("terminationProtection", False) == CONFIG[env].retain_stateful, (env, name)
    assert CONFIG["prod"].retain_stateful


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_execution_log_group_has_retention(templates: dict, env: str) -> None:
    t = api(templates, env)
    (group,) = [
        g for g in resources(t, "AWS::Logs::LogGroup").values()
        if "API-Gateway-Execution-Logs_" in json.dumps(g["Properties"].get("LogGroupName"))
    ]
    assert group["Properties"]["RetentionInDays"] == CONFIG[env].api.access_log_retention_days
    assert "KmsKeyId" in group["Properties"]
