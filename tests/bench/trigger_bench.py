"""`trigger_latency`: from a commit landing (or the end of `git push`) to the first stage's command
running on an agent (issue 4, "Benchmark").

Real processes on 127.0.0.1: `buildit controller` on SQLite and one `buildit agent` with the
local executor. Two modes, 20 pushes each, one at a time (each waits for its stage to start):

* `watch`: a local repository registered with the controller; each sample commits to it with the
  git CLI. The clock starts when `git commit` returns: the commit has landed.
* `webhook`: a remote repository served over loopback smart-HTTP by git's own `git http-backend`,
  registered with a one-day poll interval (so polling plays no part); each sample pushes to it
  with `git push` and then, as a forge or a `post-receive` hook would, POSTs the generic webhook
  with the branch and its new head (`{"ref", "after"}`), which lets the controller fetch that
  commit in one request. The clock starts when `git push` returns.

The clock stops where the stage's first command runs: it appends `date +%s%N` (the host clock,
the same the bench reads) to a file outside the workspace. In between: the controller notices
(inotify / the hook), fetches into its mirror, reads `.buildit.kdl` from the commit, plans and
leases the stage; the agent fetches the commit from the controller's mirror over smart-HTTP,
checks it out into the workspace, and starts the shell.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.bench.common import BenchError, context_fields, log, percentile, scratch_dir
from tests.integration.fleet.harness import Agent, Controller, wait_for
from tests.integration.triggers.gitrepos import GIT_ENV, GitHttpServer, commit, git, make_repo

PUSHES = 20
TARGET_P50_MS = 50.0
TARGET_P95_MS = 100.0
#: Production lease settings, not the fast test ones (they do not matter for one-at-a-time pushes).
CONTROLLER_ENV = {"BUILDIT_LEASE_TTL": "15", "BUILDIT_HEARTBEAT_INTERVAL": "3"}


def _pipeline(stamps: Path) -> str:
    return f'pipeline "latency"\nstage "first" {{ run "date +%s%N >> {stamps}"; }}\n'


def _stamps(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split() if line.strip()]


def _register(controller: Controller, url: str, **extra: Any) -> dict[str, Any]:
    status, body, _ = controller.request("POST", "/api/v1/repos", {"url": url, **extra})
    if status != 201:
        raise BenchError(f"POST /api/v1/repos answered {status}: {body}")
    return dict(body)


def _wait_stamp(stamps: Path, count: int) -> int:
    found = wait_for(lambda: len(s := _stamps(stamps)) >= count and s, 30, f"stage start #{count}")
    return int(found[count - 1])


def bench_trigger_latency(mode: str, pushes: int = PUSHES) -> dict[str, Any]:
    """Median and 95th percentile, in ms, of push -> first command running (see the module docstring)."""
    with scratch_dir(f"buildit-bench-trigger-{mode}-") as work:
        controller = Controller(work, f"sqlite:///{work / 'buildit.db'}", env=CONTROLLER_ENV)
        try:
            controller.start()
        except AssertionError as exc:
            raise BenchError(f"the controller did not start: {str(exc)[-2000:]}") from None
        agent = Agent(work, controller, "bench", capacity=2)
        server: GitHttpServer | None = None
        try:
            wait_for(
                lambda: any(a["status"] == "online" for a in controller.agents()), 60, "the agent online"
            )
            stamps = work / "stamps"
            source = make_repo(work / "src", {".buildit.kdl": _pipeline(stamps)})
            if mode == "watch":
                repo = _register(controller, str(source))
                target = source
            else:
                served = work / "served"
                served.mkdir()
                subprocess.run(
                    ["git", "clone", "-q", "--bare", str(source), str(served / "app.git")],
                    env=GIT_ENV,
                    check=True,
                )
                server = GitHttpServer(served)
                repo = _register(controller, f"{server.url}/app.git", poll_interval_s=86400)
                target = served / "app.git"
            hook = f"/hooks/git/{repo['id']}"
            auth = {"Authorization": f"Bearer {repo['webhook_secret']}"}
            samples: list[float] = []
            for i in range(pushes + 2):  # two warm-up pushes (first fetches, caches), then the samples
                if mode == "watch":
                    commit(source, {"n.txt": str(i)}, f"change {i}")
                    landed = time.time_ns()
                else:
                    sha = commit(source, {"n.txt": str(i)}, f"change {i}")
                    git(source, "push", "-q", str(target), "main")
                    landed = time.time_ns()
                    note = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
                    status, body, _ = controller.request("POST", hook, raw=note, headers=auth)
                    if status != 202:
                        raise BenchError(f"the webhook answered {status}: {body}")
                started = _wait_stamp(stamps, i + 1)
                if i >= 2:
                    samples.append((started - landed) / 1e6)
                time.sleep(0.2)  # let the stage finish: each push meets an idle controller and agent
            log(f"trigger_latency/{mode}: " + " ".join(f"{s:.0f}" for s in samples))
        finally:
            agent.stop()
            controller.stop()
            if server is not None:
                server.close()
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    return {
        "bench": "trigger_latency",
        "mode": mode,
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "pushes": pushes,
        "target_p50_ms": TARGET_P50_MS,
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": p50 <= TARGET_P50_MS and p95 <= TARGET_P95_MS,
        "max_ms": round(max(samples), 1),
        **context_fields(),
    }
