"""`/ws`: the live-update WebSocket, one per page (the protocol is in README, "Live updates").

Each connection runs a reader (this handler: parses requests, starts and stops streams) and a
writer (a task draining the connection's bounded `Outbox` to the socket), so a client that does not
read never stalls request handling, the hub, the scheduler or other clients. Topic updates come from
the shared `LiveHub`; each log stream is its own `LogFollower` task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Any

from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from controller.auth.permissions import Permission, requires
from controller.deps import Deps
from controller.live.hub import AGENTS, RUNS, LiveHub, run_key
from controller.live.logfollow import FollowError, LogFollower, dumps
from controller.live.outbox import Outbox
from controller.live.render import agent_messages, run_message, run_tenant_ok, stage_messages
from controller.live.requests import BadRequest, FollowLog, StopLog, Watch, parse

log = logging.getLogger(__name__)

MAX_LOG_STREAMS = 32
MAX_FRAME_CHARS = 64 * 1024


def _hub(state: State, deps: Deps) -> LiveHub:
    """The app's one hub (made at the first socket), fanning events out to every connection."""
    hub = state.get("live_hub")
    if hub is None:
        hub = LiveHub(deps)
        state["live_hub"] = hub
    assert isinstance(hub, LiveHub)
    return hub


class Connection:
    """One page's socket: its topics, its log streams and its outbox."""

    def __init__(self, deps: Deps, hub: LiveHub, outbox: Outbox | None = None) -> None:
        self.deps = deps
        self.hub = hub
        self.outbox = outbox or Outbox()
        self.topics: set[Hashable] = set()
        self.logs: dict[str, asyncio.Task[None]] = {}

    # -- Watcher (called by the hub)

    def deliver(self, key: Hashable, message: dict[str, Any]) -> None:
        """Queue a topic update; on overflow the outbox sends `reload` for the topic instead."""
        self.outbox.put(key, dumps(message), dumps(_reload(key)))

    def reload(self, key: Hashable) -> None:
        """The hub missed events of `key`: the client must re-read it."""
        self.outbox.discard(key)
        self.outbox.put_control(dumps(_reload(key)))

    # -- requests

    def error(self, message: str) -> None:
        """Tell the client what was wrong with its message (the socket stays open)."""
        self.outbox.put_control(dumps({"type": "error", "message": message}))

    async def handle(self, text: str) -> None:
        """Act on one client message; any problem is answered with an `error` message."""
        try:
            request = parse(text)
            if isinstance(request, Watch):
                await self._watch(request)
            elif isinstance(request, FollowLog):
                await self._follow(request)
            elif isinstance(request, StopLog):
                self._stop_log(request.tag)
        except BadRequest as exc:
            self.error(str(exc))

    async def _watch(self, request: Watch) -> None:
        key = run_key(request.run_id) if request.run_id is not None else (request.topic,)
        if request.stop:
            self.topics.discard(key)
            self.hub.unwatch(key, self)
            self.outbox.discard(key)
            return
        message = None
        if request.run_id is not None:
            message = await run_message(self.deps, request.run_id)
            if message is None:
                raise BadRequest(f'"watch": no run {request.run_id}; watch a run id the API lists')
        self.topics.add(key)
        self.hub.watch(key, self)
        # The current state, so nothing changed between rendering the page and watching is missed
        # (the dashboard's list of all runs is the page's own: too big to resend).
        if request.run_id is not None and message is not None:
            self.deliver(key, message)
            for stage in await stage_messages(request.run_id):
                self.deliver(key, stage)
        elif key == AGENTS:
            for agent in (await agent_messages(self.deps)).values():
                self.deliver(key, agent)

    async def _follow(self, request: FollowLog) -> None:
        if request.tag in self.logs:
            self._stop_log(request.tag)  # a re-request (after a reload) replaces the stream
        if len(self.logs) >= MAX_LOG_STREAMS:
            raise BadRequest(f'"log": at most {MAX_LOG_STREAMS} log streams per socket; "unlog" one first')
        if not await run_tenant_ok(self.deps, request.run_id):
            raise BadRequest(f'"log": no run {request.run_id}')
        follower = LogFollower(
            self.deps,
            request.tag,
            request.run_id,
            request.stage,
            request.attempt,
            request.offset,
            self._send_log,
            self.outbox.wait_room,
        )
        try:
            await follower.state()  # unknown stage or attempt: answer now, start nothing
        except FollowError as exc:
            raise BadRequest(f'"log": {exc}') from None
        self.logs[request.tag] = asyncio.create_task(self._run_follower(follower), name="live-log")

    def _send_log(self, message: dict[str, Any]) -> None:
        # Log streams wait for room themselves (their file is their buffer): never dropped here.
        self.outbox.put_control(dumps(message))

    async def _run_follower(self, follower: LogFollower) -> None:
        try:
            await follower.run()
        except FollowError as exc:
            self.error(f'"log" {follower.tag!r}: {exc}')
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live log stream %r failed", follower.tag)
            self.error(f'"log" {follower.tag!r}: internal error; request it again from your last "next"')
        finally:
            if self.logs.get(follower.tag) is asyncio.current_task():
                del self.logs[follower.tag]

    def _stop_log(self, tag: str) -> None:
        task = self.logs.pop(tag, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """The socket is gone: stop every stream and leave the hub."""
        tasks = list(self.logs.values())
        self.logs.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.hub.disconnect(self)


def _reload(key: Hashable) -> dict[str, Any]:
    if isinstance(key, tuple) and key[0] == "run":
        return {"type": "reload", "topic": "run", "run_id": str(key[1])}
    if key == RUNS:
        return {"type": "reload", "topic": "runs"}
    if key == AGENTS:
        return {"type": "reload", "topic": "agents"}
    return {"type": "reload", "topic": str(key)}


async def _write(socket: WebSocket[Any, Any, Any], outbox: Outbox) -> None:
    while True:
        await socket.send_text(await outbox.get())


@websocket("/ws", opt=requires(Permission.READ))
async def live_socket(socket: WebSocket[Any, Any, Any], deps: NamedDependency[Deps]) -> None:
    """Live updates for one page: watch topics, follow logs (protocol in README, "Live updates")."""
    await socket.accept()
    hub = _hub(socket.app.state, deps)
    hub.connect()
    conn = Connection(deps, hub)
    writer = asyncio.create_task(_write(socket, conn.outbox), name="live-writer")
    try:
        while not writer.done():
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if not isinstance(text, str):
                conn.error("send JSON text frames, not binary ones")
            elif len(text) > MAX_FRAME_CHARS:
                conn.error(f"a message may have at most {MAX_FRAME_CHARS} characters")
            else:
                await conn.handle(text)
    except WebSocketDisconnect:
        pass
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        await conn.close()


LIVE_HANDLERS = [live_socket]
