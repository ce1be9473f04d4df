"""The deployed serving path on one machine, built from the synthesized templates (``make local``).

Modules: :mod:`.cfn` (templates of one environment, intrinsics and secrets resolved locally),
:mod:`.template` (the task's containers, the REST API), :mod:`.engine` (vLLM's command line on the
CPU engine), :mod:`.gateway` (the gateway's process), :mod:`.frontdoor` (the REST API stand-in),
:mod:`.stack` (start/stop all three), :mod:`.smoke` (the checks of ``make local-check``).
"""
