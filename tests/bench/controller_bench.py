"""Benchmarks of the controller and agents as deployed: real `buildit controller` / `buildit agent`
processes on 127.0.0.1, SQLite in a temporary directory (issue 3, "Benchmarks").

* `lease_latency`: stage queued -> lease in the agent's hands, one stage at a time, one agent.
* `throughput`: 200 one-stage runs of `true` through 4 real agent processes, as fast as REST takes
  them; stages per second and controller CPU per stage.
* `fleet`: 1,000 simulated agents in this process (each its own name, Lease stream, log stream,
  heartbeats and, by default, its own TCP connection) while 200 stages flow; controller RSS and
  lease latency under that load.
* `agent_rss`: resident memory of an idle, registered `buildit agent`.

Why real processes: the figures are for what an operator runs (its imports, its uvicorn and grpc
servers, its database writes), and process CPU and RSS can only be read from a process of its own.
The controller runs with the production lease TTL and heartbeat interval (15 s / 3 s), not the
tests' fast ones, so heartbeat traffic is what a real fleet sends.

Clocks: latencies compare the controller's `queued_at` (datetime.now(UTC) in the controller) with
`time.time()` where the lease arrived; both read the same host clock. The lease's deadline minus the
TTL is the controller's own time of leasing, which splits each latency into the controller's part
(`dispatch`: queued -> leased, including the database writes) and the wire's (`delivery`: leased ->
received, including gRPC and the receiving event loop).
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

from agent.client import RpcFailure
from tests.bench.common import (
    BenchError,
    context_fields,
    cpu_seconds,
    cpu_times,
    epoch,
    latency_summary,
    log,
    memory_mib,
    percentile,
    scratch_dir,
)
from tests.bench.simagent import LeaseArrival, SimAgent
from tests.integration.fleet.harness import BUILDIT, Agent, Controller, Proc

LEASE_TTL_S = 15.0
HEARTBEAT_S = 3.0
#: The production defaults, spelled out: the harness would otherwise give the controller its fast
#: test settings (0.3 s heartbeats), ten times the heartbeat traffic of a real fleet.
CONTROLLER_ENV = {"BUILDIT_LEASE_TTL": f"{LEASE_TTL_S:g}", "BUILDIT_HEARTBEAT_INTERVAL": f"{HEARTBEAT_S:g}"}
ONE_STAGE = 'pipeline "bench"\nstage "s" { run "true"; }\n'

LEASE_TARGET_P99_MS = 20.0
THROUGHPUT_TARGET_PER_S = 100.0
CPU_TARGET_MS_PER_STAGE = 5.0
FLEET_TARGET_RSS_MIB = 300.0
AGENT_TARGET_RSS_MIB = 60.0

STAGE_TIMEOUT_S = 10.0  # one stage of the sequential lease bench; far above normal
FLOW_TIMEOUT_S = 120.0  # all stages of the throughput bench
#: The fleet bench's whole life (bring-up, idle, flow, drain), before its trigger time is added:
#: 1,000 agents come up in about 6 s here, the idle measurement takes 6 s.
FLEET_BUDGET_S = 40.0
ONLINE_TIMEOUT_S = 60.0  # agents reaching "online"
#: How long a simulated stage runs in the fleet bench: at 20 runs/s about 20 overlap, so leases go to
#: many agents and the controller holds that many leases, heartbeats listing them, at once.
FLEET_STAGE_S = 1.0
# What agent.stage logs after the final update (agent.contract.logformat: message, then the stage).
_SUCCEEDED_LINE = re.compile(r": stage succeeded  pipeline=")


# --------------------------------------------------------------------------- plumbing

_P = ParamSpec("_P")


def reported(bench: Callable[_P, dict[str, Any]]) -> Callable[_P, dict[str, Any]]:
    """Turn the ways a bench can break (a refused RPC, a dead process, a harness assertion) into
    BenchError, so the entry point prints an error line and goes on with the next bench."""

    @functools.wraps(bench)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> dict[str, Any]:
        try:
            return bench(*args, **kwargs)
        except (RpcFailure, OSError, AssertionError) as exc:
            raise BenchError(f"{exc.__class__.__name__}: {str(exc)[-2000:]}") from exc

    return wrapper


def until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` (bench side only) until it is truthy; BenchError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


@contextmanager
def controller_process(work: Path) -> Iterator[Controller]:
    """`buildit controller` on 127.0.0.1 (OS-chosen ports), SQLite under `work`; stopped afterwards."""
    controller = Controller(work, f"sqlite:///{work / 'buildit.db'}", env=CONTROLLER_ENV)
    try:
        try:
            controller.start()
        except AssertionError as exc:  # the harness reports start-up failures as assertions
            raise BenchError(f"the controller did not start: {str(exc)[-2000:]}") from None
        yield controller
    finally:
        controller.stop()


def controller_pid(controller: Controller) -> int:
    """The controller's pid (the console script runs the interpreter directly, so it is the child)."""
    assert controller.proc is not None
    return controller.proc.proc.pid


def create_pipeline(controller: Controller) -> str:
    """Register the one-stage pipeline; its id."""
    status, body, _ = controller.request("POST", "/api/v1/pipelines", {"config": ONE_STAGE, "name": "bench"})
    if status != 201:
        raise BenchError(f"POST /api/v1/pipelines answered {status}: {body}")
    return str(body["id"])


_client = threading.local()


def _connection(controller: Controller) -> http.client.HTTPConnection:
    """This thread's keep-alive connection to the controller's REST API (one per REST client).

    An integration that triggers many runs holds an HTTP session open (requests.Session, httpx);
    a connection per request would make the benchmark measure TCP set-up and tear-down.
    """
    connection: http.client.HTTPConnection | None = getattr(_client, "connection", None)
    if connection is None or connection.port != controller.http_port:
        connection = http.client.HTTPConnection("127.0.0.1", controller.http_port, timeout=30)
        _client.connection = connection
    return connection


def trigger(controller: Controller, pipeline_id: str) -> dict[str, Any]:
    """POST a run; the run as the API returns it (with its stage and the stage's `queued_at`)."""
    body = json.dumps({"branch": "main"}).encode()
    # Authenticated as integrations are: an API key (the admin's) on every request.
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {controller.api_key}"}
    path = f"/api/v1/pipelines/{pipeline_id}/runs"
    for attempt in (1, 2):
        connection = _connection(controller)
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            payload = response.read()
            break
        except (http.client.HTTPException, OSError):
            connection.close()
            _client.connection = None
            if attempt == 2:
                raise
    if response.status != 201:
        raise BenchError(f"POST …/runs answered {response.status}: {payload[:500]!r}")
    return dict(json.loads(payload))


def list_runs(controller: Controller, pipeline_id: str) -> list[dict[str, Any]]:
    """Every run of the pipeline (up to 200 a page, newest first)."""
    runs: list[dict[str, Any]] = []
    before = ""
    for _ in range(100):  # bounded: 20,000 runs is far more than any bench makes
        status, body, _ = controller.request("GET", f"/api/v1/pipelines/{pipeline_id}/runs?limit=200{before}")
        if status != 200:
            raise BenchError(f"GET …/runs answered {status}: {body}")
        page = list(body["runs"])
        runs += page
        if len(page) < 200:
            return runs
        before = f"&before={page[-1]['number']}"
    raise BenchError("too many runs to list")


def online_agents(controller: Controller) -> int:
    """How many agents the controller sees with an open lease stream."""
    status, body, _ = controller.request("GET", "/api/v1/agents")
    if status != 200:
        raise BenchError(f"GET /api/v1/agents answered {status}: {body}")
    return sum(1 for agent in body["agents"] if agent["status"] == "online")


def wait_online(
    controller: Controller, count: int, procs: list[Proc] | None = None, timeout: float = ONLINE_TIMEOUT_S
) -> None:
    """Wait until `count` agents are online; fail early, with its output, if an agent process died."""

    def ready() -> bool:
        for proc in procs or []:
            if proc.proc.poll() is not None:
                raise BenchError(f"agent exited {proc.proc.returncode}: {proc.output[-2000:]}")
        return online_agents(controller) >= count

    until(ready, timeout, f"{count} agent(s) online", interval=0.2)


@dataclass(frozen=True)
class Latency:
    """One lease's timings in seconds (see the module docstring for the parts)."""

    total: float  # queued -> received
    dispatch: float | None  # queued -> leased (controller clock only)
    delivery: float | None  # leased -> received


def lease_timing(run: dict[str, Any], arrival: LeaseArrival) -> Latency:
    """Split queued -> received for a run's only stage, from its `queued_at` and the arrival."""
    queued_at = run["stages"][0]["queued_at"]
    if queued_at is None:
        raise BenchError(f"run {run['number']}: the API shows no queued_at")
    queued = epoch(queued_at)
    total = arrival.received - queued
    if total < 0:
        raise BenchError(f"lease received {-total * 1000:.1f} ms before it was queued: clocks disagree")
    if arrival.deadline is None:
        return Latency(total, None, None)
    leased = arrival.deadline - LEASE_TTL_S
    return Latency(total, leased - queued, arrival.received - leased)


def latency_fields(latencies: list[Latency]) -> dict[str, Any]:
    """Percentiles of the total and, when the deadline allowed the split, of its two parts."""
    out: dict[str, Any] = latency_summary("", [lat.total for lat in latencies])
    dispatch = [lat.dispatch for lat in latencies if lat.dispatch is not None]
    delivery = [lat.delivery for lat in latencies if lat.delivery is not None]
    if dispatch and delivery:
        out.update(latency_summary("dispatch_", dispatch))
        out.update(latency_summary("delivery_", delivery))
    return out


# --------------------------------------------------------------------------- lease latency


async def _lease_samples(
    controller: Controller, pipeline_id: str, samples: int, warmup: int
) -> tuple[list[Latency], list[float]]:
    """Trigger runs one after another through one SimAgent; latencies and trigger -> lease times."""
    arrivals: dict[str, LeaseArrival] = {}
    agent = SimAgent(
        controller.grpc_address,
        "bench-lease",
        controller.token,
        on_lease=lambda arrival: arrivals.__setitem__(arrival.run_id, arrival),
        lifetime_s=STAGE_TIMEOUT_S * (samples + warmup),
    )
    await agent.start()
    latencies: list[Latency] = []
    trigger_to_lease: list[float] = []
    try:
        await asyncio.to_thread(wait_online, controller, 1)
        for i in range(warmup + samples):
            sent = time.time()
            run = await asyncio.to_thread(trigger, controller, pipeline_id)
            async with asyncio.timeout(STAGE_TIMEOUT_S):
                while agent.completed < i + 1 and not agent.errors:  # the run finished: next one
                    await agent.progress.wait()
                    agent.progress.clear()
            if agent.errors:
                raise BenchError("; ".join(agent.errors[:5]))
            arrival = arrivals.get(run["id"])
            if arrival is None:
                raise BenchError(f"run {run['number']} finished without its lease being seen")
            if arrival.attempt != 1:
                raise BenchError(f"run {run['number']} was leased as attempt {arrival.attempt}")
            if i >= warmup:
                latencies.append(lease_timing(run, arrival))
                trigger_to_lease.append(arrival.received - sent)
    except TimeoutError:
        raise BenchError(
            f"a stage took more than {STAGE_TIMEOUT_S:g}s; agent errors: {agent.errors[:5]}"
        ) from None
    finally:
        await agent.stop()
    return latencies, trigger_to_lease


@reported
def bench_lease_latency(samples: int, warmup: int = 10) -> dict[str, Any]:
    """Stage ready -> agent holds the lease, measured one stage at a time (nothing else queued)."""
    with scratch_dir("buildit-bench-lease-") as work, controller_process(work) as controller:
        pipeline_id = create_pipeline(controller)
        log(f"lease_latency: {warmup} warm-up + {samples} sequential one-stage runs")
        latencies, trigger_to_lease = asyncio.run(_lease_samples(controller, pipeline_id, samples, warmup))
    figures = latency_fields(latencies)
    return {
        "bench": "lease_latency",
        "p50_ms": figures.pop("p50_ms"),
        "p99_ms": figures.pop("p99_ms"),
        "samples": len(latencies),
        "target_p99_ms": LEASE_TARGET_P99_MS,
        "meets_target": percentile([lat.total for lat in latencies], 99) * 1000 <= LEASE_TARGET_P99_MS,
        **figures,
        "trigger_to_lease_p50_ms": round(percentile(trigger_to_lease, 50) * 1000, 2),
        "warmup_runs": warmup,
        "method": "real controller process (SQLite); simulated agent over agent.client; "
        "latency = lease arrival (time.time) - stage queued_at (REST)",
        **context_fields(),
    }


# --------------------------------------------------------------------------- throughput


def _succeeded_lines(agents: list[Agent]) -> int:
    """Stages the agents reported succeeded (and the controller acknowledged), from their logs."""
    return sum(1 for agent in agents for line in list(agent.proc.lines) if _SUCCEEDED_LINE.search(line))


@dataclass(frozen=True)
class _Round:
    """One measured round of the throughput bench."""

    rate: float  # stages per second, first trigger -> last stage finished (controller clock)
    controller_ms: float
    user_ms: float
    system_ms: float
    agents_ms: float
    client_ms: float
    window_s: float
    trigger_s: float
    busy: float


def _throughput_round(
    controller: Controller, procs: list[Agent], pipeline_id: str, stages: int, clients: int
) -> _Round:
    """Trigger `stages` runs with `clients` concurrent REST clients; CPU and rate of that round."""
    agent_pids = {a.name: a.proc.proc.pid for a in procs}
    pids = {"controller": controller_pid(controller), "client": os.getpid(), **agent_pids}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    split_before = cpu_times(pids["controller"])
    done_before = _succeeded_lines(procs)
    started = time.time()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda _: trigger(controller, pipeline_id), range(stages)))
    triggered = time.time()
    until(
        lambda: _succeeded_lines(procs) - done_before >= stages,
        FLOW_TIMEOUT_S,
        f"{stages} stages to succeed (counted in the agents' 'stage succeeded' lines)",
        interval=0.01,
    )
    seen = time.time()
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    user, system = cpu_times(pids["controller"])
    numbers = {run["number"] for run in runs}
    measured = [run for run in list_runs(controller, pipeline_id) if run["number"] in numbers]
    not_ok = [f"{run['number']}:{run['status']}" for run in measured if run["status"] != "succeeded"]
    if len(measured) != stages or not_ok:
        raise BenchError(f"{len(measured)} runs listed, not succeeded: {not_ok[:10]}")
    window = max(epoch(run["finished_at"]) for run in measured) - started
    controller_ms = cpu.pop("controller") / stages * 1000
    agents_ms = sum(cpu[name] for name in agent_pids) / stages * 1000
    client_ms = cpu["client"] / stages * 1000
    cpus = context_fields()["cpus"]
    busy = (controller_ms + agents_ms + client_ms) / 1000 * stages / ((seen - started) * max(cpus, 1))
    return _Round(
        rate=stages / window,
        controller_ms=controller_ms,
        user_ms=(user - split_before[0]) / stages * 1000,
        system_ms=(system - split_before[1]) / stages * 1000,
        agents_ms=agents_ms,
        client_ms=client_ms,
        window_s=window,
        trigger_s=triggered - started,
        busy=busy,
    )


@reported
def bench_throughput(
    stages: int, agents: int, capacity: int, clients: int, rounds: int = 3
) -> dict[str, Any]:
    """One-stage runs of `true` pushed through real agent processes as fast as REST accepts them.

    Completion is seen in the agents' own log lines ("lease …: succeeded", written once the
    controller acknowledged the final status), not by polling the API, whose requests would add to
    the controller CPU being measured. The run list is read after each round to check every run
    succeeded and to take the last `finished_at`.

    A round of 200 stages lasts under two seconds, short enough for the other processes on two
    cores to sway it by ±15 %: `rounds` rounds run on the same controller and agents, the median
    round is the figure, and every round is reported with it.
    """
    with scratch_dir("buildit-bench-throughput-") as work, controller_process(work) as controller:
        procs = [Agent(work, controller, f"bench-{i}", capacity=capacity) for i in range(agents)]
        try:
            wait_online(controller, agents, [a.proc for a in procs])
            pipeline_id = create_pipeline(controller)
            warm = agents * capacity
            log(f"throughput: warm-up with {warm} runs")
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda _: trigger(controller, pipeline_id), range(warm)))
            until(lambda: _succeeded_lines(procs) >= warm, FLOW_TIMEOUT_S, "warm-up runs")
            results: list[_Round] = []
            for index in range(rounds):
                time.sleep(0.5)  # let the previous writes settle before the CPU window opens
                log(
                    f"throughput: round {index + 1}/{rounds}: {stages} runs, {clients} REST clients, "
                    f"{agents} agents x {capacity} slots"
                )
                results.append(_throughput_round(controller, procs, pipeline_id, stages, clients))
        finally:
            for agent in procs:
                agent.stop()
    by_cpu = sorted(results, key=lambda r: r.controller_ms)
    median = by_cpu[len(by_cpu) // 2]
    rate = sorted(r.rate for r in results)[len(results) // 2]
    return {
        "bench": "throughput",
        "stages": stages,
        "agents": agents,
        "stages_per_s": round(rate, 1),
        "controller_cpu_ms_per_stage": round(median.controller_ms, 2),
        "target_stages_per_s": THROUGHPUT_TARGET_PER_S,
        "target_cpu_ms_per_stage": CPU_TARGET_MS_PER_STAGE,
        "meets_target": rate >= THROUGHPUT_TARGET_PER_S and median.controller_ms <= CPU_TARGET_MS_PER_STAGE,
        "meets_rate_target": rate >= THROUGHPUT_TARGET_PER_S,
        "meets_cpu_target": median.controller_ms <= CPU_TARGET_MS_PER_STAGE,
        "rounds": [
            {"stages_per_s": round(r.rate, 1), "controller_cpu_ms_per_stage": round(r.controller_ms, 2)}
            for r in results
        ],
        "capacity_per_agent": capacity,
        "rest_clients": clients,
        # The rest describes the round with the median controller CPU.
        "controller_cpu_user_ms_per_stage": round(median.user_ms, 2),
        "controller_cpu_system_ms_per_stage": round(median.system_ms, 2),
        "window_s": round(median.window_s, 3),
        "trigger_s": round(median.trigger_s, 3),
        "agents_cpu_ms_per_stage": round(median.agents_ms, 2),
        "bench_client_cpu_ms_per_stage": round(median.client_ms, 2),
        # All CPU spent by the processes involved, over what the machine's cores could give in the
        # window: near 100 % means the rate is bounded by this machine, not by waiting.
        "machine_busy_pct": round(median.busy * 100, 1),
        **context_fields(),
    }


# --------------------------------------------------------------------------- fleet


async def _fleet(
    controller: Controller, pipeline_id: str, agents: int, connections: int, stages: int, rate: float
) -> dict[str, Any]:
    """Start the simulated fleet, measure it idle, flow stages through it at `rate`, measure again.

    Everything, the simulated agents' heartbeats included, ends within `budget` seconds.
    """
    budget = FLEET_BUDGET_S + stages / rate
    arrivals: dict[str, LeaseArrival] = {}
    fleet = [
        SimAgent(
            controller.grpc_address,
            f"sim-{i:04d}",
            controller.token,
            on_lease=lambda arrival: arrivals.__setitem__(arrival.run_id, arrival),
            lifetime_s=budget,
            connection=i % connections,
            jitter_first_heartbeat=True,
            stage_s=FLEET_STAGE_S,
        )
        for i in range(agents)
    ]
    started = time.monotonic()
    try:
        async with asyncio.timeout(budget):
            return await _fleet_phases(controller, pipeline_id, fleet, arrivals, stages, rate, budget)
    except TimeoutError:
        done = sum(agent.completed for agent in fleet)
        raise BenchError(
            f"the fleet bench ran out of its {budget:g}s budget ({done}/{stages} stages finished, "
            f"{time.monotonic() - started:.1f}s in)"
        ) from None
    finally:
        await asyncio.gather(*(agent.stop() for agent in fleet))


async def _fleet_phases(
    controller: Controller,
    pipeline_id: str,
    fleet: list[SimAgent],
    arrivals: dict[str, LeaseArrival],
    stages: int,
    rate: float,
    budget: float,
) -> dict[str, Any]:
    """The phases of `_fleet` (see there): bring-up, idle, flow; returns the figures."""
    pid = controller_pid(controller)
    loop = asyncio.get_running_loop()
    agents = len(fleet)
    rss_idle_controller = memory_mib(pid)
    gate = asyncio.Semaphore(50)  # registrations in flight: a fleet coming up, not a stampede

    async def bring_up(agent: SimAgent) -> None:
        async with gate:
            await agent.start()

    started = time.monotonic()
    await asyncio.gather(*(bring_up(agent) for agent in fleet))
    await asyncio.to_thread(wait_online, controller, agents, None, budget)
    connect_s = time.monotonic() - started
    log(f"fleet: {agents} agents online in {connect_s:.1f}s; measuring the idle fleet")
    # Two heartbeat intervals with nothing but heartbeats (and pings) going on.
    cpu0, own0 = cpu_seconds(pid), time.process_time()
    await asyncio.sleep(2 * HEARTBEAT_S)
    idle_cpu_pct = (cpu_seconds(pid) - cpu0) / (2 * HEARTBEAT_S) * 100
    sim_idle_cpu_pct = (time.process_time() - own0) / (2 * HEARTBEAT_S) * 100
    rss_connected = memory_mib(pid)

    log(f"fleet: {stages} runs at {rate:g}/s across the fleet")
    cpu0, own0 = cpu_seconds(pid), time.process_time()
    flow_started = time.monotonic()
    flowing = asyncio.Event()
    lags: list[float] = []
    monitor = asyncio.create_task(_loop_lag(flowing, lags, budget))
    with ThreadPoolExecutor(8) as pool:
        pending = []
        for i in range(stages):  # open loop: a slow answer does not delay the next trigger
            await asyncio.sleep(max(0.0, flow_started + i / rate - time.monotonic()))
            pending.append(loop.run_in_executor(pool, trigger, controller, pipeline_id))
        runs = await asyncio.gather(*pending)
    while sum(agent.completed for agent in fleet) < stages:  # bounded by the caller's budget
        errors = [e for agent in fleet for e in agent.errors]
        if errors:
            raise BenchError("; ".join(errors[:5]))
        await asyncio.sleep(0.05)
    flow_s = time.monotonic() - flow_started
    flowing.set()
    await monitor
    flow_cpu_ms = (cpu_seconds(pid) - cpu0) * 1000
    sim_flow_cpu_pct = (time.process_time() - own0) / flow_s * 100
    rss_after = memory_mib(pid)
    rss_peak = memory_mib(pid, "VmHWM")
    heartbeats = sum(agent.heartbeats for agent in fleet)
    lost_reports = sum(agent.lost_reports for agent in fleet)
    errors = [e for agent in fleet for e in agent.errors]
    used = sum(1 for agent in fleet if agent.completed)
    if errors:
        raise BenchError("; ".join(errors[:5]))
    missing = [run["number"] for run in runs if run["id"] not in arrivals]
    if missing:
        raise BenchError(f"no lease seen for runs {missing[:10]}")
    latencies = [lease_timing(run, arrivals[run["id"]]) for run in runs]
    figures = latency_fields(latencies)
    return {
        "controller_rss_mib": round(rss_after, 1),
        "lease_p99_ms": figures["p99_ms"],
        "lease_p50_ms": figures["p50_ms"],
        "controller_rss_connected_mib": round(rss_connected, 1),
        "controller_rss_peak_mib": round(rss_peak, 1),
        "controller_rss_before_agents_mib": round(rss_idle_controller, 1),
        "connect_s": round(connect_s, 2),
        "idle_controller_cpu_pct": round(idle_cpu_pct, 1),
        "flow_s": round(flow_s, 2),
        "flow_controller_cpu_ms_per_stage": round(flow_cpu_ms / stages, 2),
        # The simulated fleet shares this machine's cores with the controller: its load is context
        # for the latencies (a busy simulator delays its own receipt of leases too).
        "sim_idle_cpu_pct": round(sim_idle_cpu_pct, 1),
        "sim_flow_cpu_pct": round(sim_flow_cpu_pct, 1),
        "sim_loop_lag_p99_ms": round(percentile(lags, 99) * 1000, 2) if lags else None,
        "agents_used": used,
        "heartbeats": heartbeats,
        "heartbeat_lost_reports": lost_reports,
        "lease": figures,
    }


async def _loop_lag(done: asyncio.Event, lags: list[float], limit_s: float) -> None:
    """How late this event loop wakes from a 10 ms sleep, until `done` (or `limit_s`).

    The simulated fleet's loop also receives the leases: its lateness is part of each measured
    `delivery`, and this tells how much of it is the simulator rather than the controller.
    """
    end = time.monotonic() + limit_s
    while not done.is_set() and time.monotonic() < end:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(max(0.0, time.monotonic() - before - 0.01))


@reported
def bench_fleet(agents: int, connections: int, stages: int, rate: float) -> dict[str, Any]:
    """1,000 simulated agents against one controller process while stages flow through them."""
    connections = max(1, min(connections, agents))
    with scratch_dir("buildit-bench-fleet-") as work, controller_process(work) as controller:
        pipeline_id = create_pipeline(controller)
        log(f"fleet: bringing up {agents} simulated agents over {connections} connection(s)")
        figures = asyncio.run(_fleet(controller, pipeline_id, agents, connections, stages, rate))
    return {
        "bench": "fleet",
        "agents": agents,
        "controller_rss_mib": figures.pop("controller_rss_mib"),
        "lease_p99_ms": figures.pop("lease_p99_ms"),
        "target_rss_mib": FLEET_TARGET_RSS_MIB,
        "target_lease_p99_ms": LEASE_TARGET_P99_MS,
        # On the peak, not just the RSS at the end: the controller must fit in the budget throughout.
        "meets_target": figures["controller_rss_peak_mib"] <= FLEET_TARGET_RSS_MIB,
        "meets_lease_target": figures["lease"]["p99_ms"] <= LEASE_TARGET_P99_MS,
        "connections": connections,
        "stages": stages,
        "trigger_rate_per_s": rate,
        "heartbeat_interval_s": HEARTBEAT_S,
        "stage_s": FLEET_STAGE_S,
        **figures,
        **context_fields(),
    }


# --------------------------------------------------------------------------- idle agent memory


def _docker_configured() -> bool:
    """Whether `--executor auto` would load the Docker SDK here (an engine socket or DOCKER_HOST)."""
    return bool(os.environ.get("DOCKER_HOST")) or os.path.exists("/var/run/docker.sock")


@reported
def bench_agent_rss(idle_s: float = 3.0) -> dict[str, Any]:
    """Resident memory of a registered agent with nothing to do, after `idle_s` of heartbeats.

    Measured twice: with `--executor local` (what the fleet tests run) and with the default
    `--executor auto`, which on a Docker host also loads the Docker SDK and talks to the engine.
    """
    out: dict[str, Any] = {}
    with scratch_dir("buildit-bench-agent-") as work, controller_process(work) as controller:
        local = Agent(work, controller, "bench-local")
        auto_args = [
            BUILDIT,
            "agent",
            "--controller",
            controller.grpc_address,
            "--registration-token",
            controller.token,
            "--name",
            "bench-auto",
            "--state-dir",
            str(work / "agent-bench-auto"),
        ]
        auto = Proc(auto_args, dict(os.environ), work)
        try:
            wait_online(controller, 2, [local.proc, auto])
            time.sleep(idle_s)
            for key, proc in (("", local.proc), ("auto_", auto)):
                pid = proc.proc.pid
                out[f"{key}idle_rss_mib"] = round(memory_mib(pid), 1)
                out[f"{key}peak_rss_mib"] = round(memory_mib(pid, "VmHWM"), 1)
            out["auto_executors"] = "docker+local" if "executors: docker" in auto.output else "local"
        finally:
            local.stop()
            auto.stop()
    idle = out.pop("idle_rss_mib")
    return {
        "bench": "agent_rss",
        "idle_rss_mib": idle,
        "target_rss_mib": AGENT_TARGET_RSS_MIB,
        "meets_target": idle <= AGENT_TARGET_RSS_MIB,
        "meets_target_auto": out["auto_idle_rss_mib"] <= AGENT_TARGET_RSS_MIB,
        "executor": "local",
        "idle_s": idle_s,
        **out,
        "docker_configured": _docker_configured(),
        **context_fields(),
    }
