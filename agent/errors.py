"""How the agent process ends when it cannot go on: `AgentExit`, an exit status and one line.

Its own module because every part of the runtime may end the agent (registration, the state dir,
a call the controller refuses for good) and `agent.cli` turns it into the process's exit.
"""

from __future__ import annotations

from agent.client import RpcFailure

__all__ = ["AgentExit", "refused"]


class AgentExit(Exception):
    """The agent must stop: `code` is the process exit status, the message one line for the operator."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def refused(what: str, failure: RpcFailure) -> AgentExit:
    """The exit of an agent whose agent-wide call the controller refuses for good (a FATAL code).

    Why exit rather than retry: the classifier says repeating the call cannot help, and an agent
    that can take no leases, ship no logs or send no heartbeats is better gone, loudly, than idle.
    """
    return AgentExit(1, f"the controller refuses {what} of this agent: {failure} (retrying cannot help)")
