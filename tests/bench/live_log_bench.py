"""`live_log`: a stage's output to a browser's WebSocket, 200,000 lines (target 0.5 s: 400,000 lines/s).

Real processes on 127.0.0.1: `buildit controller` on SQLite and one `buildit agent` with the local
executor, production lease TTL and heartbeat. The pipeline's one stage runs

    date +%s.%N; seq -f 'line %.0f' 1 200000

so its first output line is its own start time (the host clock, which this process reads too),
then the numbered lines. For each round a client (the `websockets` library, as a page would)
connects to `/ws`, watches the run and asks for the stage's log from offset 0 right after the run is
triggered, then reads until `log_end`. The clock stops when the message carrying the last line
arrives: `stage_to_browser_s` = that arrival - the command's start time. Everything in between is
measured: the agent reading the pipe, masking and batching lines, gRPC to the controller, the log
file write and its database row, the event bus, and the WebSocket messages (JSON, permessage-deflate).

Every round checks the text received is exactly the stored log's lines, each once and in order
(`$ <command>`, the start time, `line 1` ... `line 200000`, then BuildIt's closing line; the header
and closing line carry BuildIt's markers, agent.contract.logmarks), and that the `offset`/`next` of
the messages chain without gap or overlap. The clock stops at the last line of the command's
output, not at the closing line written after the command ended. One warm-up round is discarded
(imports, page cache); the median of the measured rounds is reported, each round listed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import websockets

from agent.contract import logmarks
from tests.bench.common import BenchError, context_fields, log, scratch_dir
from tests.integration.fleet.harness import Agent, Controller, wait_for

LINES = 200_000
ROUNDS = 3
TARGET_S = 0.5
TIMEOUT_S = 120.0
#: Production lease settings, not the fast test ones.
CONTROLLER_ENV = {"BUILDIT_LEASE_TTL": "15", "BUILDIT_HEARTBEAT_INTERVAL": "3"}


def _command(lines: int) -> str:
    return f"date +%s.%N; seq -f 'line %.0f' 1 {lines}"


def _pipeline(lines: int) -> str:
    return f'pipeline "live-log"\nstage "print" {{ run "{_command(lines)}"; }}\n'


async def _round(controller: Controller, pipeline: str, lines: int) -> dict[str, Any]:
    """One run: trigger, follow the log over /ws, verify it; the figures of this round."""
    url = f"ws://127.0.0.1:{controller.http_port}/ws"
    headers = {"Authorization": f"Bearer {controller.api_key}"}
    async with websockets.connect(url, max_size=None, additional_headers=headers) as ws:
        number = controller.trigger(pipeline)
        run_id = controller.run(pipeline, number)["id"]
        await ws.send(json.dumps({"op": "watch", "topic": "run", "run_id": run_id}))
        request = {"op": "log", "id": "bench", "run_id": run_id, "stage": "print", "attempt": 1, "offset": 0}
        await ws.send(json.dumps(request))
        parts: list[str] = []
        position = 0
        messages = 0
        last_arrival = 0.0
        last_line = f"\nline {lines}\n"
        seen = ""  # the end of what arrived so far: the last line may be cut between messages
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                message = json.loads(await ws.recv())
                kind = message["type"]
                if kind == "error":
                    raise BenchError(f"/ws answered an error: {message['message']}")
                if kind == "reload":
                    raise BenchError(f"/ws told the client to reload: {message}")
                if message.get("id") != "bench":
                    continue
                if kind == "log":
                    seen = seen[-len(last_line) :] + message["data"]
                    if not last_arrival and last_line in seen:
                        last_arrival = time.time()
                    if message["offset"] != position:
                        raise BenchError(f"log message at offset {message['offset']}, expected {position}")
                    position = message["next"]
                    parts.append(message["data"])
                    messages += 1
                elif kind == "log_end":
                    if message["status"] != "succeeded":
                        raise BenchError(f"the stage ended {message['status']}")
                    break
    text = "".join(parts)
    got = [logmarks.plain(line) for line in text.split("\n")]
    closing = "buildit: stage succeeded (1 command)"
    if got[0] != f"$ {_command(lines)}" or got[-2:] != [closing, ""] or not last_arrival:
        raise BenchError(f"unexpected log framing: {got[0][:100]!r} ... {got[-2][:100]!r}")
    try:
        started = float(got[1])
    except ValueError:
        raise BenchError(f"the first output line is not a start time: {got[1][:100]!r}") from None
    expected = [f"line {i}" for i in range(1, lines + 1)]
    if got[2:-2] != expected:
        missing = next((i for i, (a, b) in enumerate(zip(got[2:-2], expected, strict=False)) if a != b), None)
        raise BenchError(f"the lines differ from 1..{lines} (first difference at line {missing})")
    if position != len(text.encode("utf-8")):
        raise BenchError(f"`next` ended at {position}, but {len(text.encode())} bytes arrived")
    return {"seconds": last_arrival - started, "messages": messages, "bytes": position}


def bench_live_log(lines: int = LINES, rounds: int = ROUNDS) -> dict[str, Any]:
    """Median seconds from the stage's command starting to its last line reaching the client."""
    with scratch_dir("buildit-bench-livelog-") as work:
        controller = Controller(work, f"sqlite:///{work / 'buildit.db'}", env=CONTROLLER_ENV)
        try:
            controller.start()
        except AssertionError as exc:
            raise BenchError(f"the controller did not start: {str(exc)[-2000:]}") from None
        agent = Agent(work, controller, "bench", capacity=1)
        try:
            wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 60, "the agent")
            pipeline = controller.create_pipeline(_pipeline(lines))
            results: list[dict[str, Any]] = []
            for i in range(rounds + 1):
                result = asyncio.run(_round(controller, pipeline, lines))
                label = "warm-up" if i == 0 else f"round {i}/{rounds}"
                log(f"live_log: {label}: {result['seconds']:.3f}s in {result['messages']} messages")
                if i > 0:
                    results.append(result)
        finally:
            agent.stop()
            controller.stop()
    samples = [r["seconds"] for r in results]
    median = statistics.median(samples)
    return {
        "bench": "live_log",
        "lines": lines,
        "stage_to_browser_s": round(median, 4),
        "lines_per_s": round(lines / median),
        "target_s": TARGET_S,
        "target_lines_per_s": round(LINES / TARGET_S),
        "meets_target": lines / median >= LINES / TARGET_S,
        "rounds": rounds,
        "samples_s": [round(s, 4) for s in samples],
        "messages": [r["messages"] for r in results],
        "log_bytes": results[-1]["bytes"],
        **context_fields(),
    }
