"""``make local`` and ``make local-check``: the deployed serving path on this machine, from ``cdk.out``.

    python -m tools.local run   --env dev [--port 8300 --gateway-port 8301 --vllm-port 8302]
    python -m tools.local check --env dev [...]

``run`` starts vLLM (the CPU engine with the task's command line on the tiny model), the gateway
(the task's command and environment) and the front door (the REST API as the api stack declares
it), prints one line per component and one with the URL and an API key, and stops everything on
Ctrl-C. ``check`` starts the same, runs :mod:`tools.local.smoke`, prints one line per check, stops,
and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .cfn import TemplateError
from . import smoke
from .stack import REPO, Endpoint, LocalStack, Ports, StartError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.local", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["run", "check"])
    p.add_argument("--env", required=True, help="environment name (config/NAME.yaml)")
    p.add_argument("--cdk-out", type=Path, default=REPO / "cdk.out", help="cloud assembly (default: cdk.out)")
    p.add_argument("--port", type=int, default=Ports.frontdoor, help="front door port")
    p.add_argument("--gateway-port", type=int, default=Ports.gateway)
    p.add_argument("--vllm-port", type=int, default=Ports.vllm)
    return p


def run_checks(ep: Endpoint) -> list[str]:
    """Every smoke check, one line each; the names of those that failed."""
    failed = []
    for o in smoke.run(ep):
        if not o.ok:
            failed.append(o.name)
        detail = o.detail.splitlines()[0][:240] if o.detail else ""
        print(f"{'pass' if o.ok else 'FAIL'}  {o.name:<20} {o.seconds:6.2f} s  {detail}", flush=True)
    return failed


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)  # the terminal went away: stop as for Ctrl-C
    with tempfile.TemporaryDirectory(prefix=f"llmh-local-{args.env}-") as work:
        stack = LocalStack(args.cdk_out, Path(work), Ports(args.port, args.gateway_port, args.vllm_port))
        try:
            ep = stack.start(args.env)
            tenant, key = next(iter(ep.keys.items()))
            print(f"ready     OPENAI_BASE_URL={ep.openai_base_url}  x-api-key={key}  (tenant {tenant}; Ctrl-C stops)", flush=True)
            if args.command == "check":
                failed = run_checks(ep)
                print(f"{len(smoke.CHECKS) - len(failed)} of {len(smoke.CHECKS)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
                return 1 if failed else 0
            while all(c.alive() for c in stack.components()):
                time.sleep(0.5)
            dead = [c for c in stack.components() if not c.alive()]
            print(f"{dead[0].name} exited ({dead[0].popen.returncode}); stopping:\n{dead[0].tail()}", file=sys.stderr)
            return 1
        except (TemplateError, StartError, ValueError) as exc:
            print(f"local: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        except Exception:
            traceback.print_exc()
            return 1
        finally:
            # The components run in sessions of their own, out of reach of the terminal's signals: once
            # stopping has begun, nothing may end this process before they are stopped (seen: on Ctrl-C
            # make exits without waiting for this process, the terminal then hung up, and this process
            # died mid-stop, leaving vLLM and the gateway running on their ports).
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            running = [c.name for c in stack.components()]
            stack.stop_all()
            if running:
                with contextlib.suppress(OSError):  # the terminal may be gone
                    print(f"stopped   {', '.join(running)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
