"""BuildIt's benchmarks; `make bench` (= `python -m tests.bench.run`), `--only NAME` for some of them.

The first two (in this module) measure `buildit run` as a user runs it, which the unit tests cannot:
the wall-clock cost BuildIt adds on top of the work a pipeline does. Each runs the real console
script in a subprocess (interpreter start-up, imports, planning, workspaces, the executor and the
terminal reporter all included) and compares it with the cheapest way to do the same work by hand,
so the difference is BuildIt's own overhead:

* `local_overhead`: a 50-stage chain of `true` with `--executor local`, against a shell loop that
  spawns `sh -c true` 50 times. Target: at most 10 ms per stage.
* `docker_overhead`: a 10-stage chain of `true` in the busybox test image, against 10 sequential
  `docker run --rm`. Target: at most 1.2 times as slow.

The next four (`tests.bench.controller_bench`) measure the controller and agents as deployed:
`lease_latency`, `throughput`, `fleet` and `agent_rss` (targets and method in that module). The
next two (`tests.bench.trigger_bench`) are `trigger_latency` in its `watch` and `webhook` modes:
a commit or a push to the first stage's command running. The last (`tests.bench.live_log_bench`) is
`live_log`: 200,000 lines a stage prints reaching a WebSocket client of `/ws`. `auth_overhead`
(`tests.bench.auth_bench`) is what authentication and the policy point add to one REST read.

Output contract: exactly one JSON object per line on stdout (machine-readable, so CI can keep a
history); progress goes to stderr. Exit 0 when every benchmark ran, 1 when one could not (its JSON
line then carries an `error`; the others still run). Targets are reported, not enforced: timings on
shared CI machines are too noisy to fail a build on.

Medians over several repeats (after one discarded warm-up run that fills the page and .pyc caches)
keep a single slow run from skewing the figures; the two sides of each comparison are interleaved so
that drifting machine load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.bench import controller_bench
from tests.bench.common import BenchError, context_fields, emit, log

LOCAL_STAGES = 50
LOCAL_TARGET_MS = 10.0
DOCKER_STAGES = 10
DOCKER_TARGET_RATIO = 1.2
TEST_IMAGE = os.environ.get("BUILDIT_TEST_IMAGE", "buildit-test/busybox:1")
RUN_TIMEOUT_S = 300.0  # one buildit run; far above normal so only a hang trips it
BENCH_LABEL = "buildit.bench"  # on our own `docker run` containers, so cleanup finds exactly them


def buildit_script() -> Path:
    """The `buildit` console script of this interpreter's environment (.venv/bin/buildit).

    Taken from next to `sys.executable` (not resolved: the venv's python is a symlink) so the bench
    runs the installed entry point exactly as a user's shell would, not whatever is first on PATH.
    """
    script = Path(sys.executable).parent / "buildit"
    if not script.is_file():
        raise BenchError(f"{script} not found; run `make install` first")
    return script


def chain_pipeline(stages: int, image: str | None = None) -> str:
    """KDL for a strictly sequential chain s1 <- s2 <- ... each running `true`.

    A chain (every stage `needs` the previous one) defeats `--jobs` parallelism, so the run is
    directly comparable with a sequential shell loop.
    """
    image_node = f'image "{image}"; ' if image else ""
    lines = ['pipeline "bench"']
    for i in range(1, stages + 1):
        needs = f' needs="s{i - 1}"' if i > 1 else ""
        lines.append(f'stage "s{i}"{needs} {{ {image_node}run "true"; }}')
    return "\n".join(lines) + "\n"


def _inside_git_repo(path: Path) -> bool:
    """Whether `path` or a parent holds `.git` (then buildit would copy that repo into every stage)."""
    return any((p / ".git").exists() for p in (path, *path.parents))


@contextmanager
def pipeline_dir() -> Iterator[Path]:
    """A fresh temporary directory outside any Git repository, removed afterwards.

    Outside a repository buildit copies the pipeline's directory into each stage's workspace; here
    that is one small file, so the bench measures BuildIt's overhead and not a source-tree copy.
    """
    path = Path(tempfile.mkdtemp(prefix="buildit-bench-")).resolve()
    try:
        if _inside_git_repo(path):
            raise BenchError(f"temp dir {path} is inside a Git repository; set TMPDIR elsewhere")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run(
    argv: Sequence[str], cwd: Path, stdout: int, on_start: Callable[[int], None] | None
) -> tuple[int, bytes, float]:
    """Run `argv` to completion: (exit code, stderr plus any captured stdout, wall-clock seconds).

    A run past RUN_TIMEOUT_S is killed (its pid is ours) and raises BenchError, so a hang cannot
    stall `make bench` forever. `on_start` gets the child's pid before it is waited for.
    """
    started = time.perf_counter()
    with subprocess.Popen(
        list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE
    ) as proc:
        if on_start is not None:
            on_start(proc.pid)
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise BenchError(f"{' '.join(argv)} did not finish within {RUN_TIMEOUT_S:g}s") from None
    return proc.returncode, (out or b"") + err, time.perf_counter() - started


def timed(argv: Sequence[str], cwd: Path, on_start: Callable[[int], None] | None = None) -> float:
    """Wall-clock seconds of one successful run with stdout to /dev/null; BenchError if it fails.

    /dev/null as in CI logs piped away: no terminal, so buildit uses its plain reporter, and no
    reader on our side adds to the time. buildit reports stage failures on stdout, so a failed run
    is repeated once with output captured to put the reason into the error.
    """
    code, _, elapsed = _run(argv, cwd, subprocess.DEVNULL, on_start)
    if code != 0:
        code, output, _ = _run(argv, cwd, subprocess.PIPE, on_start)
        tail = output.decode("utf-8", "replace").strip().splitlines()[-6:]
        raise BenchError(f"{' '.join(argv)} exited {code}: {' | '.join(line.strip() for line in tail)}")
    return elapsed


def medians(
    runs: dict[str, Callable[[], float]], repeats: int, label: str
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Run each named measurement once to warm up, then `repeats` times interleaved; medians + samples."""
    for name, run in runs.items():
        log(f"{label}: warm-up {name}")
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        for name, run in runs.items():
            samples[name].append(run())
        log(
            f"{label}: repeat {i + 1}/{repeats}: "
            + ", ".join(f"{n}={s[-1]:.3f}s" for n, s in samples.items())
        )
    return {name: statistics.median(s) for name, s in samples.items()}, samples


def _rounded(samples: dict[str, list[float]]) -> dict[str, list[float]]:
    return {name: [round(v, 4) for v in values] for name, values in samples.items()}


# --------------------------------------------------------------------------- local executor


def bench_local(repeats: int) -> dict[str, Any]:
    """BuildIt's per-stage cost with the local executor, against bare process spawns."""
    buildit = str(buildit_script())
    with pipeline_dir() as work:
        chain = work / "chain.kdl"
        chain.write_text(chain_pipeline(LOCAL_STAGES), encoding="utf-8")
        single = work / "single.kdl"
        single.write_text(chain_pipeline(1), encoding="utf-8")
        # The same 50 processes with nothing around them: the floor a CI tool cannot beat.
        loop = f"for i in $(seq {LOCAL_STAGES}); do sh -c true; done"
        runs: dict[str, Callable[[], float]] = {
            "buildit": lambda: timed([buildit, "run", str(chain), "--executor", "local"], work),
            "shell": lambda: timed(["sh", "-c", loop], work),
            "startup": lambda: timed([buildit, "run", str(single), "--executor", "local"], work),
        }
        median, samples = medians(runs, repeats, "local_overhead")
    per_stage_ms = (median["buildit"] - median["shell"]) / LOCAL_STAGES * 1000
    # The chain minus the 1-stage run is what 49 extra stages cost, with interpreter start-up,
    # imports and the summary taken out: it tells a start-up problem from a per-stage one.
    incremental_ms = (median["buildit"] - median["startup"]) / (LOCAL_STAGES - 1) * 1000
    return {
        "bench": "local_overhead",
        "stages": LOCAL_STAGES,
        "repeats": repeats,
        "buildit_s": round(median["buildit"], 4),
        "shell_s": round(median["shell"], 4),
        "per_stage_overhead_ms": round(per_stage_ms, 2),
        "target_ms": LOCAL_TARGET_MS,
        "meets_target": per_stage_ms <= LOCAL_TARGET_MS,
        "startup_s": round(median["startup"], 4),
        "incremental_per_stage_ms": round(incremental_ms, 2),
        "samples_s": _rounded(samples),
        **context_fields(),
    }


# --------------------------------------------------------------------------- docker executor


def docker_problem(image: str) -> str | None:
    """Why the Docker bench cannot run (no engine, or the local test image missing), else None."""
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`docker info` failed ({exc.__class__.__name__}: {exc}); run scripts/ensure-docker.sh"
    if info.returncode != 0:
        reason = info.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return f"`docker info` exited {info.returncode}: {reason[0]}; run scripts/ensure-docker.sh"
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"image {image} not present on the engine; run scripts/ensure-docker.sh (no registry here)"
    return None


class ContainerJanitor:
    """Removes the containers this bench caused, and only those: other sessions share the engine.

    Ours are the `docker run` containers carrying our unique `buildit.bench` label, and the ones
    buildit created, which its Docker executor labels with the pid of the buildit process (that we
    started). `--rm` and buildit's own cleanup should leave nothing; this is the safety net for a
    timeout or a bug, and what it finds is reported (a leak is itself a finding).
    """

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:12]
        self.buildit_pids: list[int] = []
        self.host = socket.gethostname()
        self.label = f"{BENCH_LABEL}={self.token}"

    def _filters(self) -> list[list[str]]:
        sets = [[f"label={self.label}"]]
        for pid in self.buildit_pids:
            sets.append(
                ["label=buildit.managed=true", f"label=buildit.pid={pid}", f"label=buildit.host={self.host}"]
            )
        return sets

    def sweep(self) -> int:
        """Force-remove every container of ours still present; return how many there were."""
        ids: set[str] = set()
        for filters in self._filters():
            argv = ["docker", "ps", "-aq", "--no-trunc"]
            for f in filters:
                argv += ["--filter", f]
            listed = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            ids.update(listed.stdout.split())
        if ids:
            log(f"removing {len(ids)} leftover container(s)")
            subprocess.run(["docker", "rm", "-f", *sorted(ids)], capture_output=True, timeout=120)
        return len(ids)


def bench_docker(repeats: int, image: str) -> dict[str, Any]:
    """BuildIt's Docker executor against the docker CLI doing the same container runs."""
    buildit = str(buildit_script())
    janitor = ContainerJanitor()
    leftovers = 0
    with pipeline_dir() as work:
        chain = work / "chain.kdl"
        chain.write_text(chain_pipeline(DOCKER_STAGES, image=image), encoding="utf-8")
        # --network none: no registry or network here; the label lets the janitor find strays.
        docker_run = ["docker", "run", "--rm", "--network", "none", "--label", janitor.label]
        flags = ["--executor", "docker", "--network", "none", "--pull", "never"]
        buildit_argv = [buildit, "run", str(chain), *flags]

        def run_buildit() -> float:
            nonlocal leftovers
            try:
                return timed(buildit_argv, work, on_start=janitor.buildit_pids.append)
            finally:
                leftovers += janitor.sweep()  # after every run: a leak shows up per run, not at the end

        def run_docker() -> float:
            started = time.perf_counter()
            for _ in range(DOCKER_STAGES):
                timed([*docker_run, image, "true"], work)
            return time.perf_counter() - started

        try:
            median, samples = medians(
                {"buildit": run_buildit, "docker_run": run_docker}, repeats, "docker_overhead"
            )
        finally:
            leftovers += janitor.sweep()
    ratio = median["buildit"] / median["docker_run"]
    return {
        "bench": "docker_overhead",
        "stages": DOCKER_STAGES,
        "repeats": repeats,
        "image": image,
        "buildit_s": round(median["buildit"], 4),
        "docker_run_s": round(median["docker_run"], 4),
        "ratio": round(ratio, 3),
        "target_ratio": DOCKER_TARGET_RATIO,
        "meets_target": ratio <= DOCKER_TARGET_RATIO,
        "per_stage_overhead_ms": round((median["buildit"] - median["docker_run"]) / DOCKER_STAGES * 1000, 2),
        "leftover_containers_removed": leftovers,
        "samples_s": _rounded(samples),
        **context_fields(),
    }


# --------------------------------------------------------------------------- entry point


BENCHES = (
    "local",
    "docker",
    "lease",
    "throughput",
    "fleet",
    "agent_rss",
    "trigger_watch",
    "trigger_webhook",
    "live_log",
    "auth",
)
#: `--only` name -> the `bench` field of its JSON line (for the error line when it fails).
BENCH_NAMES = {
    "local": "local_overhead",
    "docker": "docker_overhead",
    "lease": "lease_latency",
    "throughput": "throughput",
    "fleet": "fleet",
    "agent_rss": "agent_rss",
    "trigger_watch": "trigger_latency",
    "trigger_webhook": "trigger_latency",
    "live_log": "live_log",
    "auth": "auth_overhead",
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line; every size has a flag so a quick run (`--fleet-agents 50`) is possible."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.run", description="BuildIt benchmarks; one JSON line each."
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHES,
        help="run just this benchmark (repeatable; default: all, in the order listed)",
    )
    parser.add_argument("--local-repeats", type=_positive, default=5, help="timed runs per side (default: 5)")
    parser.add_argument(
        "--docker-repeats", type=_positive, default=3, help="timed runs per side (default: 3)"
    )
    parser.add_argument("--lease-samples", type=_positive, default=200, help="sequential runs (default: 200)")
    parser.add_argument("--throughput-stages", type=_positive, default=200, help="runs (default: 200)")
    parser.add_argument(
        "--throughput-rounds",
        type=_positive,
        default=3,
        help="measured rounds, the median reported (default: 3)",
    )
    parser.add_argument("--trigger-pushes", type=_positive, default=20, help="pushes per mode (default: 20)")
    parser.add_argument(
        "--live-log-lines", type=_positive, default=200_000, help="lines the stage prints (default: 200000)"
    )
    parser.add_argument(
        "--live-log-rounds", type=_positive, default=3, help="measured rounds, median reported (default: 3)"
    )
    parser.add_argument(
        "--auth-requests", type=_positive, default=10_000, help="reads per side (default: 10000)"
    )
    parser.add_argument("--throughput-agents", type=_positive, default=4, help="agent processes (default: 4)")
    parser.add_argument("--throughput-capacity", type=_positive, default=4, help="slots each (default: 4)")
    parser.add_argument(
        "--throughput-clients", type=_positive, default=4, help="concurrent REST triggers (default: 4)"
    )
    parser.add_argument(
        "--fleet-agents", type=_positive, default=1000, help="simulated agents (default: 1000)"
    )
    parser.add_argument(
        "--fleet-connections",
        type=_positive,
        help="TCP connections the simulated agents spread over (default: one per agent)",
    )
    parser.add_argument("--fleet-stages", type=_positive, default=200, help="runs (default: 200)")
    parser.add_argument(
        "--fleet-rate", type=float, default=20.0, help="runs triggered per second (default: 20)"
    )
    return parser


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark `name`; its JSON record (BenchError when it cannot produce one)."""
    if name == "local":
        return bench_local(args.local_repeats)
    if name == "docker":
        problem = docker_problem(TEST_IMAGE)
        if problem is not None:
            raise BenchError(problem)
        return bench_docker(args.docker_repeats, TEST_IMAGE)
    if name == "lease":
        return controller_bench.bench_lease_latency(args.lease_samples)
    if name == "throughput":
        return controller_bench.bench_throughput(
            args.throughput_stages,
            args.throughput_agents,
            args.throughput_capacity,
            args.throughput_clients,
            args.throughput_rounds,
        )
    if name == "fleet":
        connections = args.fleet_connections or args.fleet_agents
        return controller_bench.bench_fleet(
            args.fleet_agents, connections, args.fleet_stages, max(args.fleet_rate, 0.1)
        )
    if name == "agent_rss":
        return controller_bench.bench_agent_rss()
    if name in ("trigger_watch", "trigger_webhook"):
        from tests.bench.trigger_bench import bench_trigger_latency

        return bench_trigger_latency(name.removeprefix("trigger_"), args.trigger_pushes)
    if name == "live_log":
        from tests.bench.live_log_bench import bench_live_log

        return bench_live_log(args.live_log_lines, args.live_log_rounds)
    if name == "auth":
        from tests.bench.auth_bench import bench_auth_overhead

        return bench_auth_overhead(args.auth_requests)
    raise BenchError(f"unknown benchmark {name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks in order; each prints one JSON line (an error line if it failed)."""
    args = build_parser().parse_args(argv)
    selected = [name for name in BENCHES if args.only is None or name in args.only]
    failed = False
    for name in selected:
        try:
            emit(run_one(name, args))
        except BenchError as exc:
            emit({"bench": BENCH_NAMES[name], "error": str(exc), **context_fields()})
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
