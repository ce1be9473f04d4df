"""Conversation affinity: send each conversation's turns to the task whose vLLM already
holds its prefix in the KV cache, with no router in front and no Kubernetes.

* **Ring** (:class:`HashRing`): a consistent-hash ring of the service's gateways, with
  virtual nodes, so adding or removing a task moves only that task's share of keys.
* **Key** (:func:`affinity_key`): ``prefix`` hashes the canonical JSON of the messages
  through the *first* user turn. That is the part every later turn of the same
  conversation resends unchanged (a hash through the *last* user turn would change with
  every turn and scatter the conversation); ``conversation`` hashes a caller-supplied
  ``x-conversation-id`` header and never reads message content (no header: served locally).
* **Peers** (:class:`PeerDirectory`): the gateways of one ECS service, from the A records
  of its Cloud Map service (a DNS query answered in the VPC: no AWS API call, no extra
  component), refreshed every ``affinity_refresh_s``; each peer's ``/health`` (readiness and
  vLLM's ``num_requests_waiting`` as ``backend_queue_depth``) is polled at the same pace.
* **Decision** (:meth:`Affinity.route`): owner is this task -> served locally, no hop. Owner's
  queue deeper than ``affinity_max_queue``, owner not ready, or unreachable -> served locally.
  A forwarded request carries ``x-llmh-forwarded`` and is never forwarded again.

A forward goes to the owner's gateway (same route, same body, the caller's own headers, so the
owner authenticates it again). Its response comes back through the same :class:`.proxy.ProxyCall`
as a local one: a client that goes away closes the connection to the owner, whose gateway then
closes its vLLM connection (vLLM aborts); drain and error events behave as for local calls.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import hashlib
import logging
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from . import contract
from .httpclient import Pool, Response, UpstreamError
from .upstream import CircuitBreaker, Upstream, Upstreams

log = logging.getLogger("gateway")

Mode = Literal["off", "prefix", "conversation"]
_FWD = contract.AFFINITY_FORWARDED_HEADER.encode()
_CONV = contract.CONVERSATION_ID_HEADER.encode()
# Not copied onto a forward: hop-by-hop, or rewritten by the client of the next hop.
_DROP = frozenset({b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"expect"})
# The owner's answer that means "I cannot serve this now": serve locally instead.
_FALL_BACK_STATUSES = frozenset({429, 500, 502, 503, 504})
PEER_CONNECT_TIMEOUT_S = 0.5


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing:
    """Consistent hashing with ``vnodes`` points per member on a 64-bit circle; a key belongs to
    the first point clockwise from its hash. Every gateway that sees the same member set builds
    the same ring, so they agree on each key's owner without talking to each other."""

    def __init__(self, members: Iterable[str] = (), vnodes: int = 160) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be >= 1")
        self.vnodes = vnodes
        self.members: frozenset[str] = frozenset(members)
        points = sorted((_h64(f"{m}#{i}".encode()), m) for m in self.members for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._owners = [m for _, m in points]

    def owner(self, key: int) -> str | None:
        if not self._hashes:
            return None
        i = bisect.bisect_right(self._hashes, key)
        return self._owners[i if i < len(self._owners) else 0]


def canonical(obj: Any) -> bytes:
    """Canonical JSON: key order and whitespace do not change the bytes."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def affinity_key(mode: Mode, payload: Mapping[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The ring key of a request, or None when it has none (then it is served locally)."""
    if mode == "conversation":
        for k, v in headers:
            if k == _CONV and v:
                return _h64(b"conv\0" + v)
        return None
    if mode != "prefix":
        return None
    messages = payload.get("messages")
    if isinstance(messages, list) and messages:
        end = next((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), len(messages) - 1)
        return _h64(b"msgs\0" + canonical([payload.get("model"), messages[: end + 1]]))
    prompt = payload.get("prompt")
    if isinstance(prompt, str) and prompt:
        # A completion prompt has no turns: its head stands for the conversation it continues.
        return _h64(b"prompt\0" + canonical([payload.get("model"), prompt[:contract.AFFINITY_PROMPT_HEAD_CHARS]]))
    return None


# --------------------------------------------------------------------------- peers
@dataclass(eq=False)
class Peer:
    addr: str  # "host:port", the ring member name
    upstream: Upstream
    ready: bool = False
    queue_depth: int = 0
    reason: str = "not checked yet"


def local_ip_towards(host: str) -> str:
    """This host's address on the route to ``host`` (a UDP connect sends nothing): in an awsvpc
    task that is the task ENI's private IP, the address Cloud Map registered for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


async def resolve_a(name: str, port: int) -> list[str]:
    """All IPv4 addresses of ``name`` (the Cloud Map service's A records)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    return sorted({f"{info[4][0]}:{port}" for info in infos})


class PeerDirectory:
    """The current member set (static list or DNS) and the last-polled state of each peer."""

    def __init__(
        self,
        *,
        make_pool: Callable[[str], Pool],
        self_addr: str | None,
        static_peers: Iterable[str] = (),
        dns_name: str | None = None,
        port: int = contract.GATEWAY_PORT,
        vnodes: int = 160,
        resolver: Callable[[str, int], Any] = resolve_a,
    ) -> None:
        self.make_pool = make_pool
        self.self_addr = self_addr
        self.static = sorted(set(static_peers))
        self.dns_name = dns_name
        self.port = port
        self.vnodes = vnodes
        self.resolver = resolver
        self.peers: dict[str, Peer] = {}
        self.ring = HashRing((), vnodes)
        self.last_error: str | None = None

    async def discover(self) -> list[str]:
        if self.dns_name:
            return list(await self.resolver(self.dns_name, self.port))
        return list(self.static)

    async def refresh(self) -> None:
        try:
            members = await self.discover()
            self.last_error = None
        except (OSError, UnicodeError) as e:  # keep the last known ring: a DNS hiccup must not reshuffle keys
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning({"event": "affinity_discovery_failed", "error": self.last_error})
            return
        if self.self_addr is None and members:
            host = members[0].rsplit(":", 1)[0]
            self.self_addr = f"{local_ip_towards(host)}:{self.port}"
        self.set_members(members)
        await asyncio.gather(*(self._check(p) for p in self.peers.values()))

    def set_members(self, members: Iterable[str]) -> None:
        members = frozenset(members)
        if members != self.ring.members:
            self.ring = HashRing(members, self.vnodes)
            log.info({"event": "affinity_ring", "members": sorted(members), "self": self.self_addr})
        for addr in members - self.peers.keys() - {self.self_addr}:
            base = f"http://{addr}"
            self.peers[addr] = Peer(addr, Upstream(f"peer:{addr}", base, self.make_pool(base), CircuitBreaker(1, 1.0)))
        for addr in set(self.peers) - members:
            peer = self.peers.pop(addr)
            asyncio.get_running_loop().create_task(peer.upstream.close())

    async def _check(self, p: Peer) -> None:
        was = p.ready
        try:
            r = await asyncio.wait_for(p.upstream.pool.request("GET", contract.HEALTH_PATH, None, {}), 2.0)
            try:
                raw = await asyncio.wait_for(r.read(), 2.0)
            finally:
                r.release()
            p.ready = r.status == 200
            p.queue_depth = int(orjson.loads(raw).get("backend_queue_depth", 0)) if p.ready else 0
            p.reason = "ok" if p.ready else f"/health answered {r.status}"
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - anything here means: do not send it work
            p.ready = False
            p.reason = f"unreachable: {type(e).__name__}"
        if p.ready != was:
            log.info({"event": "affinity_peer", "peer": p.addr, "ready": p.ready, "reason": p.reason})

    async def close(self) -> None:
        for p in self.peers.values():
            await p.upstream.close()
        self.peers.clear()


# --------------------------------------------------------------------------- decision
Outcome = Literal["none", "received", "self", "forward", "overloaded", "unready"]


@dataclass(eq=False)
class Decision:
    outcome: Outcome
    peer: Peer | None = None
    fell_back: str | None = None  # why a planned forward was served locally after all

    @property
    def label(self) -> str:
        """What happened, for the request log line and the Prometheus counter."""
        if self.fell_back:
            return f"fallback_{self.fell_back}"
        return "forwarded" if self.outcome == "forward" else self.outcome

    def metrics(self) -> dict[str, int]:
        """EMF values (averages are the shares): only for requests that had an affinity key."""
        if self.outcome in ("none", "received"):
            return {}
        forwarded = self.outcome == "forward" and not self.fell_back
        return {
            contract.METRIC_AFFINITY_FORWARDED: int(forwarded),
            contract.METRIC_AFFINITY_HIT: int(forwarded or self.outcome == "self"),
        }


_HITS = re.compile(rb"^vllm:prefix_cache_hits_total(?:\{[^}]*\})? ([0-9.eE+-]+)", re.M)
_QUERIES = re.compile(rb"^vllm:prefix_cache_queries_total(?:\{[^}]*\})? ([0-9.eE+-]+)", re.M)


Counters = tuple[float, float]  # vLLM's (prefix_cache_hits, prefix_cache_queries) totals


def counter_deltas(last: Counters | None, now: Counters) -> Counters | None:
    """Hits and queries since the last poll, from vLLM's cumulative counters. None on the first look
    (nothing to subtract). A counter that went down means vLLM restarted and counts from zero again:
    then everything it counted since the restart is new, so the delta is its current value (as
    Prometheus' ``increase`` treats a counter reset)."""
    if last is None:
        return None
    if now[0] < last[0] or now[1] < last[1]:
        return now
    return now[0] - last[0], now[1] - last[1]


class PrefixCacheReport:
    """Every poll, the local vLLM's prefix-cache counters as deltas in one EMF line: the hit rate
    per task (dimension ``Task``) and per service (metric math Hits / Queries over tasks), and the
    window's own ratio, PrefixCacheHitRate, per task only (a search can draw it as one line per task;
    metric math cannot divide one search's series by another's)."""

    def __init__(self, s: Any, task: Callable[[], str | None]) -> None:
        self.s = s
        self.task = task
        self.last: Counters | None = None

    async def poll(self, primary: Upstream) -> dict[str, Any] | None:
        r = await asyncio.wait_for(primary.pool.request("GET", contract.METRICS_PATH, None, {}), 2.0)
        try:
            text = await asyncio.wait_for(r.read(), 2.0)
        finally:
            r.release()
        now = (sum(float(x) for x in _HITS.findall(text)), sum(float(x) for x in _QUERIES.findall(text)))
        last, self.last = self.last, now
        delta = counter_deltas(last, now)
        return None if delta is None else self.emit(*delta)

    def emit(self, hits: float, queries: float) -> dict[str, Any]:
        s = self.s
        rec: dict[str, Any] = {
            "ts": round(time.time(), 3), "level": "info", "logger": "gateway.prefix_cache",
            contract.DIMENSION_SERVICE: s.service_name, contract.DIMENSION_MODEL: s.served_model_name or "unknown",
            contract.DIMENSION_TASK: self.task() or "unknown",
            contract.METRIC_PREFIX_CACHE_HITS: int(hits), contract.METRIC_PREFIX_CACHE_QUERIES: int(queries),
        }  # fmt: skip
        if queries > 0:  # an idle window has no rate (a 0 would read as "all misses")
            rec[contract.METRIC_PREFIX_CACHE_HIT_RATE] = round(hits / queries, 4)
        if s.emf_enabled:
            base = list(contract.EMF_DIMENSION_SETS[0])
            directives = [{
                "Namespace": contract.METRICS_NAMESPACE,
                "Dimensions": [base, [*base, contract.DIMENSION_TASK]],
                "Metrics": [{"Name": m, "Unit": contract.METRIC_UNITS[m]}
                            for m in (contract.METRIC_PREFIX_CACHE_HITS, contract.METRIC_PREFIX_CACHE_QUERIES)],
            }]  # fmt: skip
            if contract.METRIC_PREFIX_CACHE_HIT_RATE in rec:
                directives.append({
                    "Namespace": contract.METRICS_NAMESPACE,
                    "Dimensions": [[*base, contract.DIMENSION_TASK]],
                    "Metrics": [{"Name": contract.METRIC_PREFIX_CACHE_HIT_RATE,
                                 "Unit": contract.METRIC_UNITS[contract.METRIC_PREFIX_CACHE_HIT_RATE]}],
                })  # fmt: skip
            rec["_aws"] = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}
        sys.stdout.write(orjson.dumps(rec).decode() + "\n")
        sys.stdout.flush()
        return rec


@dataclass(eq=False)
class Affinity:
    """Routing by affinity for one gateway worker; started and stopped with the gateway."""

    mode: Mode
    directory: PeerDirectory
    upstreams: Upstreams
    max_queue: int
    refresh_s: float
    report: PrefixCacheReport | None = None
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        await self.directory.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.directory.refresh()
            if self.report is not None:
                try:
                    await self.report.poll(self.upstreams.primary)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - the backend monitor reports vLLM's health
                    log.debug({"event": "prefix_cache_poll_failed", "error": type(e).__name__})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self.directory.close()

    def route(self, payload: Mapping[str, Any] | None, headers: Iterable[tuple[bytes, bytes]]) -> Decision:
        headers = list(headers)
        if any(k == _FWD for k, _ in headers):
            return Decision("received")  # a forwarded request is never forwarded again
        key = affinity_key(self.mode, payload, headers) if payload is not None else None
        if key is None:
            return Decision("none")
        owner = self.directory.ring.owner(key)
        if owner is None or owner == self.directory.self_addr:
            return Decision("self" if owner is not None else "none")
        peer = self.directory.peers.get(owner)
        if peer is None or not peer.ready:
            return Decision("unready", peer)
        if peer.queue_depth > self.max_queue:
            return Decision("overloaded", peer)
        return Decision("forward", peer)

    def opener_for(self, payload: Mapping[str, Any] | None, headers: list[tuple[bytes, bytes]], rec: Any) -> Callable[..., Any]:
        """Route one request and return how to open its upstream call; the decision goes on the
        request record (log line, EMF, Prometheus)."""
        decision = self.route(payload, headers)
        rec.extra["affinity"] = decision
        return self.opener(decision, headers)

    def opener(self, decision: Decision, headers: Iterable[tuple[bytes, bytes]]) -> Callable[..., Any]:
        """``Upstreams.open`` for this request: the owner's gateway, falling back to the local
        upstreams when the owner cannot be reached or answers that it cannot serve now."""
        if decision.outcome != "forward":
            return self.upstreams.open
        peer = decision.peer
        assert peer is not None
        fwd = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k not in _DROP and k != _FWD]

        async def open_(method: str, path: str, body: Any, h: dict[str, str]) -> tuple[Upstream, Response]:
            # The body as the local vLLM would get it (usage injected): the owner relays usage back.
            data = body(self.upstreams.primary) if callable(body) else body
            mine = {k.lower() for k in h}
            out = {k: v for k, v in fwd if k not in mine}  # one header per name: ours win
            out.update(h)
            out[contract.AFFINITY_FORWARDED_HEADER] = self.directory.self_addr or "1"
            try:
                resp = await peer.upstream.pool.request(method, path, data, out)
            except (UpstreamError, OSError) as e:
                peer.ready = False  # until the next poll says otherwise: later requests skip the dead owner
                peer.reason = f"forward failed: {type(e).__name__}"
                decision.fell_back = "unreachable"
            else:
                if resp.status not in _FALL_BACK_STATUSES:
                    return peer.upstream, resp
                resp.close()
                decision.fell_back = f"owner_{resp.status}"
            return await self.upstreams.open(method, path, body, h)

        return open_


_reporter_lock: Any = None


def _sole_reporter(port: int) -> bool:
    """True in exactly one of the gateway's worker processes (they share the port): vLLM's counters
    are per engine, so a second reporting worker would count every token twice."""
    global _reporter_lock
    if _reporter_lock is not None:
        return True
    f = open(os.path.join(tempfile.gettempdir(), f"llmh-gateway-{port}-prefix-cache.lock"), "w")  # noqa: SIM115
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _reporter_lock = f  # held for the life of the process; the kernel releases it on exit
    return True


def build_affinity(s: Any, upstreams: Upstreams) -> Affinity | None:
    """The gateway's affinity router from its settings, or None when it is off."""
    if s.affinity == "off":
        return None

    def make_pool(base: str) -> Pool:
        # A short connect timeout: a peer in the VPC connects in well under a millisecond, and a task
        # that vanished (no RST) must not hold a request for the full upstream connect timeout.
        return Pool(
            base, connect_timeout_s=min(s.connect_timeout_s, PEER_CONNECT_TIMEOUT_S), read_timeout_s=s.read_timeout_s,
            keepalive_s=s.upstream_keepalive_s, max_idle=s.upstream_pool_size,
        )  # fmt: skip

    directory = PeerDirectory(
        make_pool=make_pool,
        self_addr=s.affinity_self or None,
        static_peers=s.affinity_peers,
        dns_name=s.affinity_dns_name or None,
        port=s.affinity_port,
    )
    report = PrefixCacheReport(s, lambda: directory.self_addr) if _sole_reporter(s.port) else None
    return Affinity(s.affinity, directory, upstreams, s.affinity_max_queue, s.affinity_refresh_s, report)
