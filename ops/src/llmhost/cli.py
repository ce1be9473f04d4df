"""The ``llmhost`` command line.

Every failure the user can act on ends as one line on stderr, ``llmhost: error: ...``, and
exit code 1; wrong usage exits 2 (click's convention). Output meant for pipes (the chat
answer) goes to stdout, everything else to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
from llm_hosting_constructs.sizing import (
    DTYPES,
    KV_CACHE_DTYPES,
    QUANTIZATIONS,
    SizingError,
    get_model,
    weight_bytes,
)
from rich.console import Console
from rich.table import Table

from . import __version__, cost, environments, outputs, prewarm, sagemaker, size, usage
from .aws import Aws
from .client import ChatResult, Client, Endpoint, endpoint
from .errors import LlmhostError

API_KEY_ENV = "LLMHOST_API_KEY"


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@dataclass
class State:
    config_dir: Path | None
    profile: str | None

    def env(self, name: str, *, whole_config_checks: bool = True) -> Any:
        config_dir = environments.find_config_dir(self.config_dir)
        return environments.load(name, config_dir, whole_config_checks=whole_config_checks)

    def aws(self, cfg: Any) -> Aws:
        return Aws(region=cfg.region, profile=self.profile, expected_account=cfg.account)


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"The repository's config/ (default: found from the current directory, or ${environments.CONFIG_DIR_ENV}).",
)
@click.option("--profile", help="AWS profile (default: the usual AWS_PROFILE / environment credentials).")
@click.version_option(__version__, prog_name="llmhost")
@click.pass_context
def cli(ctx: click.Context, config_dir: Path | None, profile: str | None) -> None:
    """Operate llm-hosting environments: size, cost, prewarm, usage, chat, sagemaker-invoke, smoke."""
    ctx.obj = State(config_dir, profile)


# --- size ---------------------------------------------------------------------


@cli.command("size")
@click.option("--env", "env_name", help="Size the environment as configured in config/NAME.yaml.")
@click.option("--model", "model_id", help="Hugging Face id (catalog model), instead of or over --env.")
@click.option("--instance", "instance_type", help="Instance type, e.g. g6e.xlarge or ml.g5.2xlarge.")
@click.option("--dtype", type=click.Choice(DTYPES), help="Weight dtype (default: the config's, else auto).")
@click.option("--quantization", type=click.Choice(["none", *QUANTIZATIONS]), help="Weight quantization.")
@click.option("--kv-cache-dtype", type=click.Choice(KV_CACHE_DTYPES), help="KV-cache dtype.")
@click.option("--max-model-len", type=click.IntRange(min=1), help="Longest sequence (default: the model's context).")
@click.option(
    "--tp",
    "--tensor-parallel-size",
    "tp",
    type=click.IntRange(min=1),
    help="GPUs per replica (default: all the heads allow).",
)
@click.option(
    "--gpu-memory-utilization", type=click.FloatRange(0, 1, min_open=True), help="vLLM's budget share (default 0.9)."
)
@click.option("--max-num-seqs", type=click.IntRange(min=1), help="vLLM's batch limit (default 256).")
@pass_state
def size_cmd(
    state: State,
    env_name: str | None,
    model_id: str | None,
    instance_type: str | None,
    dtype: str | None,
    quantization: str | None,
    kv_cache_dtype: str | None,
    max_model_len: int | None,
    tp: int | None,
    gpu_memory_utilization: float | None,
    max_num_seqs: int | None,
) -> None:
    """Does the model fit the GPUs, how much KV cache is left, what would fit instead.

    Exit code 1 when it does not fit, so CI can run it before a deploy.
    """
    if env_name is None and (model_id is None or instance_type is None):
        raise click.UsageError("give --env NAME, or both --model and --instance")
    # (instance type, vLLM settings) per backend to size; the command line overrides the config.
    runs: list[tuple[str, dict[str, Any]]] = []
    if env_name:
        cfg = state.env(env_name, whole_config_checks=False)
        m = cfg.model
        model = get_model(m.id, m.architecture)
        common = {
            "dtype": m.dtype,
            "quantization": environments.quantization(m),
            "kv_cache_dtype": m.kv_cache_dtype,
            "max_model_len": m.max_model_len,
            "tensor_parallel_size": m.tensor_parallel_size,
        }
        if cfg.ecs is not None:
            ecs = {"gpu_memory_utilization": cfg.ecs.gpu_memory_utilization, "max_num_seqs": cfg.ecs.max_num_seqs}
            runs.append((cfg.ecs.instance_type, common | ecs))
        if cfg.sagemaker is not None:
            runs.append((cfg.sagemaker.instance_type, common | {"max_num_seqs": cfg.sagemaker.max_concurrent_requests}))
    if model_id:
        model = get_model(model_id)
    if instance_type:
        runs = [(instance_type, runs[0][1] if runs else {})]
    given = {
        "dtype": dtype,
        "kv_cache_dtype": kv_cache_dtype,
        "max_model_len": max_model_len,
        "tensor_parallel_size": tp,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_num_seqs": max_num_seqs,
    }
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if quantization is not None:
        overrides["quantization"] = None if quantization == "none" else quantization
    console = _out()
    problems: list[str] = []
    for instance, settings in runs:
        request = size.SizeRequest(model=model, instance_type=instance, **(settings | overrides))
        problems += size.render(console, request).problems
    if problems:
        raise LlmhostError(" | ".join(problems))


# --- cost ---------------------------------------------------------------------


def _deployment(cfg: Any) -> cost.Deployment:
    m = cfg.model
    model = get_model(m.id, m.architecture)
    q = environments.quantization(m)
    # fp8 is applied by vLLM when loading: the checkpoint in the cache stays 16-bit. AWQ/GPTQ
    # checkpoints are stored quantized.
    stored_q = q if q in {"awq", "gptq"} else None
    ecs, sm = cfg.ecs, cfg.sagemaker
    return cost.Deployment(
        name=cfg.name,
        region=cfg.region,
        model_id=m.id,
        model_bytes_on_disk=weight_bytes(model, dtype=m.dtype, quantization=stored_q),
        availability_zones=len(cfg.availability_zones),
        nat_gateways=cfg.network.nat_gateways,
        waf_enabled=cfg.api.waf_enabled,
        ecs_instance_type=ecs.instance_type if ecs else None,
        ecs_instances=ecs.desired_capacity if ecs else 0,
        ecs_max_instances=ecs.max_capacity if ecs else 0,
        off_hours=ecs.off_hours if ecs else None,
        sagemaker_instance_type=sm.instance_type if sm else None,
        sagemaker_instances=sm.min_capacity if sm else 0,
        sagemaker_off_hours=sm.off_hours if sm else None,
    )


@cli.command("cost")
@click.option("--env", "env_name", required=True, help="Environment (config/NAME.yaml).")
@click.option("--requests-per-day", type=click.FloatRange(min=0), required=True)
@click.option("--input-tokens", type=click.IntRange(min=0), required=True, help="Prompt tokens per request.")
@click.option("--output-tokens", type=click.IntRange(min=0), required=True, help="Completion tokens per request.")
@click.option(
    "--api-input-price", type=click.FloatRange(min=0), help="USD per million input tokens of the API to compare."
)
@click.option(
    "--api-output-price", type=click.FloatRange(min=0), help="USD per million output tokens of the API to compare."
)
@click.option(
    "--instance-output-tps",
    type=click.FloatRange(min=0, min_open=True),
    help="Benchmarked output tokens/s one instance sustains; grows the fleet with the traffic.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write cost against volume to this image; the extension picks the format (.png, .svg, .pdf, ...).",
)
@click.option(
    "--prices", "prices_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Another prices file."
)
@pass_state
def cost_cmd(
    state: State,
    env_name: str,
    requests_per_day: float,
    input_tokens: int,
    output_tokens: int,
    api_input_price: float | None,
    api_output_price: float | None,
    instance_output_tps: float | None,
    plot: Path | None,
    prices_file: Path | None,
) -> None:
    """Monthly cost of the environment as configured vs the same traffic on a commercial API."""
    if plot:
        from .plot import check_format

        check_format(plot)
    cfg = state.env(env_name)
    deployment = _deployment(cfg)
    prices = cost.load_prices(prices_file)
    api = cost.api_price_for(prices, deployment.model_id, api_input_price, api_output_price)
    traffic = cost.Traffic(requests_per_day, input_tokens, output_tokens)
    est = cost.estimate(deployment, traffic, prices, api, instance_output_tps=instance_output_tps)

    console = _out()
    t = Table(
        title=f"{env_name}: {requests_per_day:,.0f} requests/day × "
        f"({input_tokens:,} in + {output_tokens:,} out) tokens",
        title_justify="left",
        caption=f"on-demand prices, {prices.region}, read {prices.read_on}; 730 h per month",
        caption_justify="left",
    )
    t.add_column("monthly charge")
    t.add_column("USD", justify="right")
    t.add_column("basis", style="dim")
    for line in est.lines:
        t.add_row(line.item, f"{line.monthly_usd:,.2f}", line.basis)
    t.add_section()
    t.add_row("[bold]self-hosted total[/bold]", f"[bold]{est.total_usd:,.2f}[/bold]", "")
    t.add_row(
        f"[bold]{api.name}[/bold]",
        f"[bold]{est.api_monthly_usd:,.2f}[/bold]",
        f"${api.input_per_million}/M in, ${api.output_per_million}/M out",
    )
    console.print(t)
    if est.crossover_requests_per_day is None:
        console.print(f"crossover: none — {api.name} stays cheaper up to 1e9 requests/day of this shape")
    else:
        side = "self-hosting is cheaper" if requests_per_day > est.crossover_requests_per_day else "the API is cheaper"
        console.print(
            f"crossover: {est.crossover_requests_per_day:,.0f} requests/day "
            f"({est.crossover_requests_per_day * cost.DAYS_PER_MONTH:,.0f}/month); "
            f"at {requests_per_day:,.0f}/day {side}"
        )
    for note in est.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if plot:
        from .plot import plot_costs

        plot_costs(
            plot,
            title=f"llm-hosting {env_name}: monthly cost vs volume",
            self_hosted=lambda v: cost.self_hosted_monthly(
                deployment, traffic.with_volume(v), prices, instance_output_tps=instance_output_tps
            ),
            api=lambda v: cost.api_monthly(traffic.with_volume(v), api),
            api_name=api.name,
            volume=requests_per_day,
            crossover=est.crossover_requests_per_day,
        )
        console.print(f"plot written to {plot}")


# --- prewarm ------------------------------------------------------------------


@cli.command("prewarm")
@click.option("--env", "env_name", required=True, help="Environment (config/NAME.yaml).")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=7200,
    show_default=True,
    help="Seconds to follow the task.",
)
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(min=0),
    default=10,
    show_default=True,
    help="Seconds between status checks.",
)
@pass_state
def prewarm_cmd(state: State, env_name: str, timeout_s: float, poll_s: float) -> None:
    """Run the pre-warm task that downloads the model into the EFS cache, and follow it."""
    cfg = state.env(env_name)
    result = prewarm.run(state.aws(cfg), env_name, console=_err(), poll_s=poll_s, timeout_s=timeout_s)
    task_id = result.task_arn.rsplit("/", 1)[-1]
    if result.succeeded:
        _out().print(
            f"[green]✓[/green] pre-warm task {task_id} succeeded: {cfg.model.id} is in the cache ({result.reason})"
        )
        return
    where = f"; logs: {result.log}" if result.log else ""
    raise LlmhostError(f"pre-warm task {task_id} failed: {result.reason}{where}")


# --- usage ------------------------------------------------------------------------


@cli.command("usage")
@click.option("--env", "env_name", required=True, help="Environment (config/NAME.yaml).")
@click.option("--since", default="24h", show_default=True, help="Window ending now: 30m, 24h, 7d, ...")
@pass_state
def usage_cmd(state: State, env_name: str, since: str) -> None:
    """Tokens per tenant, from the gateway's CloudWatch metrics."""
    window = usage.parse_since(since)
    cfg = state.env(env_name)
    rows = usage.tenant_usage(state.aws(cfg), env_name, window)
    if not rows:
        _out().print(f"no tenant metrics for {env_name} in the last {since} (service {usage.service_name(env_name)})")
        return
    table = Table(title=f"{env_name}: tokens per tenant, last {since}")
    for col in ("tenant", "prompt tokens", "completion tokens", "total tokens", "requests", "errors"):
        table.add_column(col, justify="left" if col == "tenant" else "right")
    for r in rows:
        table.add_row(r.tenant, f"{r.prompt_tokens:,}", f"{r.completion_tokens:,}", f"{r.total_tokens:,}", f"{r.requests:,}", f"{r.errors:,}")
    _out().print(table)


# --- chat, sagemaker-invoke, smoke ---------------------------------------------


def _api_endpoint(
    state: State, env_name: str | None, url: str | None, api_key: str | None, timeout_s: float
) -> tuple[Endpoint, Any]:
    """(endpoint, config or None): --url/--api-key win; the rest comes from the api stack's outputs."""
    cfg = state.env(env_name) if env_name else None
    api_key = api_key or os.environ.get(API_KEY_ENV)
    if url is None or api_key is None:
        if cfg is None:
            raise click.UsageError("give --env NAME (or both --url and --api-key)")
        aws = state.aws(cfg)
        values = aws.stack_outputs(env_name or "", outputs.API)
        if url is None:
            url = values.get(outputs.API_URL) or _missing(env_name, outputs.API_URL)
        if api_key is None:
            ids = values.get(outputs.API_KEY_IDS) or _missing(env_name, outputs.API_KEY_IDS)
            key_id = ids.split(",")[0].strip()
            apigw = aws.client("apigateway")
            api_key = aws.call("read the API key", apigw.get_api_key, apiKey=key_id, includeValue=True)["value"]
    return endpoint(url, api_key, timeout_s), cfg


def _missing(env_name: str | None, key: str) -> NoReturn:
    raise LlmhostError(
        f"stack {outputs.stack_name(env_name or '', outputs.API)} has no output {key}: "
        "it was deployed from an older version of this app; redeploy it"
    )


def _stats(result: ChatResult) -> str:
    parts = []
    if result.ttft_s is not None:
        parts.append(f"time to first token {result.ttft_s:.3f} s")
    tokens = f"{result.completion_tokens} tokens in " if result.completion_tokens else ""
    parts.append(f"{tokens}{result.total_s:.2f} s")
    if result.decode_rate is not None:
        parts.append(f"{result.decode_rate:,.1f} tokens/s after the first")
    elif result.end_to_end_rate is not None:
        parts.append(f"{result.end_to_end_rate:,.1f} tokens/s end to end")
    if not result.streamed:
        parts.append("use --stream for time to first token")
    elif result.completion_tokens > 1 and result.decode_rate is None:
        parts.append("tokens arrived in one burst")
    return " · ".join(parts)


def _print_piece(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _endpoint_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--url and --api-key: call an API directly instead of the one the environment's stacks deployed."""
    command = click.option("--api-key", help=f"API key instead of the stack's (or ${API_KEY_ENV}).")(command)
    return click.option(
        "--url", help="API URL (stage or gateway root, or an OpenAI-style base ending in /v1) instead of the ApiUrl output."
    )(command)


@cli.command("chat")
@click.argument("prompt")
@click.option("--env", "env_name", help="Environment whose API to call (config/NAME.yaml).")
@click.option("--stream/--no-stream", default=False, help="Stream the answer as it is generated.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--model", help="Model name to send (default: the config's served_name, else the API's first model).")
@_endpoint_options
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=300, show_default=True)
@pass_state
def chat_cmd(
    state: State,
    prompt: str,
    env_name: str | None,
    stream: bool,
    max_tokens: int,
    model: str | None,
    url: str | None,
    api_key: str | None,
    timeout_s: float,
) -> None:
    """Send PROMPT to the environment's API; print the answer, then the timing."""
    ep, cfg = _api_endpoint(state, env_name, url, api_key, timeout_s)
    with Client(ep) as client:
        name = model or (cfg.model.served_name if cfg else None) or client.first_model()
        result = client.chat(name, prompt, stream=stream, max_tokens=max_tokens, on_text=_print_piece)
    sys.stdout.write("\n")
    _err().print(f"[dim]{_stats(result)}[/dim]")


@cli.command("sagemaker-invoke")
@click.argument("prompt")
@click.option("--env", "env_name", required=True, help="Environment with the sagemaker backend.")
@click.option("--stream/--no-stream", default=False, help="Use the response-stream API.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--endpoint", "endpoint_name", help="Endpoint name instead of the sagemaker stack's output.")
@pass_state
def sagemaker_cmd(
    state: State, prompt: str, env_name: str, stream: bool, max_tokens: int, endpoint_name: str | None
) -> None:
    """Send PROMPT to the environment's SageMaker endpoint; print the answer, then the timing."""
    cfg = state.env(env_name)
    if cfg.sagemaker is None:
        raise LlmhostError(f"environment {env_name} has no sagemaker backend (no 'sagemaker:' section in its config)")
    aws = state.aws(cfg)
    name = endpoint_name or aws.output(env_name, outputs.SAGEMAKER_ENDPOINT_NAME) or ""
    result = sagemaker.invoke(
        aws.client("sagemaker-runtime"),
        aws.call,
        name,
        cfg.sagemaker.container,
        prompt,
        stream=stream,
        max_tokens=max_tokens,
        on_text=_print_piece,
    )
    sys.stdout.write("\n")
    _err().print(f"[dim]{_stats(result)}[/dim]")


@cli.command("smoke")
@click.option("--env", "env_name", help="Environment whose API to check (config/NAME.yaml).")
@click.option("--model", help="Model name to send (default: the config's served_name, else the API's first model).")
@_endpoint_options
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=120, show_default=True)
@pass_state
def smoke_cmd(
    state: State, env_name: str | None, model: str | None, url: str | None, api_key: str | None, timeout_s: float
) -> None:
    """Post-deploy check: health, one completion, one stream. Exit code 1 if any fails."""
    from .smoke import run_checks

    ep, cfg = _api_endpoint(state, env_name, url, api_key, timeout_s)
    checks = run_checks(ep, model or (cfg.model.served_name if cfg else None))
    t = Table(title=f"smoke test of {ep.base_url}", title_justify="left")
    for col in ("check", "result", "seconds", "detail"):
        t.add_column(col, justify="right" if col == "seconds" else "left")
    for c in checks:
        t.add_row(c.name, "[green]pass[/green]" if c.ok else "[red]FAIL[/red]", f"{c.seconds:.2f}", c.detail)
    _out().print(t)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise LlmhostError(f"smoke test failed: {', '.join(failed)} ({len(failed)} of {len(checks)} checks)")


# --- entry point ----------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (tests call this)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="llmhost", standalone_mode=False)
    except (LlmhostError, SizingError) as exc:
        _err().print(f"llmhost: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return getattr(exc, "exit_code", 1)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        _err().print("aborted")
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
