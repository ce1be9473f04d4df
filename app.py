#!/usr/bin/env python3
"""CDK entry point: one Stage per environment file in `config/`, cdk-nag on the whole app.

`npx cdk deploy "dev/*"` deploys one environment. Every config file is validated before any
construct is created, so an invalid file fails synth with one line and writes no template.
Config is turned into construct props here and nowhere else.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from cdk_nag import AwsSolutionsChecks

from config.schema import CONFIG_DIR, ConfigError, EnvironmentConfig, load_all
from llm_hosting_constructs import outputs
from stacks.network import NetworkStack


def _removal(cfg: EnvironmentConfig) -> cdk.RemovalPolicy:
    return cdk.RemovalPolicy.RETAIN if cfg.retain_stateful else cdk.RemovalPolicy.DESTROY


_R = logs.RetentionDays
RETENTION: dict[int, logs.RetentionDays] = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS,
    30: _R.ONE_MONTH, 60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS,
    150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS, 365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS,
    545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS, 1096: _R.THREE_YEARS, 1827: _R.FIVE_YEARS,
    2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS, 2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS,
    3653: _R.TEN_YEARS,
}  # fmt: skip


def build_stage(app: cdk.App, cfg: EnvironmentConfig) -> cdk.Stage:
    """All stacks of one environment, wired together."""
    stage = cdk.Stage(app, cfg.name, env=cdk.Environment(account=cfg.account, region=cfg.region))
    NetworkStack(
        stage,
        outputs.NETWORK,
        description=f"llm-hosting {cfg.name}: VPC, flow logs, VPC endpoints",
        cidr=cfg.network.cidr,
        availability_zones=cfg.availability_zones,
        nat_gateways=cfg.network.nat_gateways,
        flow_log_retention=RETENTION[cfg.network.flow_log_retention_days],
        removal_policy=_removal(cfg),
        termination_protection=cfg.retain_stateful,
    )
    for key, value in sorted({"environment": cfg.name, **cfg.tags}.items()):
        cdk.Tags.of(stage).add(key, value)
    return stage


def build_app() -> cdk.App:
    """The app for every environment in `config/` (or `-c config_dir=PATH`), all validated first."""
    # The built-in CloudFormation check costs ~8 s per synth; cfn-lint 1.x runs the same kind of
    # spec validation (and more) over every template in `make test`, with its rules listed once.
    app = cdk.App(builtin_cloud_formation_validation=False)
    configs = load_all(Path(app.node.try_get_context("config_dir") or CONFIG_DIR))
    for cfg in configs:
        # The VPC checks its AZs against the stack's, which CDK would otherwise look up (or fake as
        # dummy1a/1b). Config is the one source: answer that lookup from it, before any construct.
        app.node.set_context(f"availability-zones:account={cfg.account}:region={cfg.region}", cfg.availability_zones)
    for cfg in configs:
        build_stage(app, cfg)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def main() -> int:
    try:
        app = build_app()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
