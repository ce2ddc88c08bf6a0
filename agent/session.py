"""The agent's identity with the controller: a stored agent token, or a registration to get one.

Every call but Register carries the agent token (`agent.client`). `Session` owns the one
`ControllerClient` and decides which token it carries: the one stored in the state dir for this
controller, else a new one from Register (name, labels, executors, capacity, version; the token is
stored 0600 for the next start). When the controller stops accepting the token (a REAUTHENTICATE
answer, see `agent.client.classify`), the agent registers again once, if it has a registration
token, and the streams opened with the old token are reopened; without one, or when the controller
refuses the token it just issued, the agent exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from agent.backoff import Backoff, sleep_unless
from agent.client import (
    FAILED_PRECONDITION,
    UNAVAILABLE,
    ControllerClient,
    FailureKind,
    RpcFailure,
    classify,
)
from agent.contract.types import RegisterRequest
from agent.errors import AgentExit
from agent.settings import AgentSettings
from agent.state import AgentState, StateError, clear_state, load_state, save_state
from agent.tls import TLS_SCHEME, explain_handshake_failure, read_ca_file, speaks_tls

__all__ = ["DEFAULT_HEARTBEAT_MS", "Session"]

log = logging.getLogger("agent")

#: The heartbeat interval until the controller names one (RegisterResponse.heartbeat_interval_ms).
DEFAULT_HEARTBEAT_MS: Final = 2000


class Session:
    """The agent's client, token, agent id and heartbeat interval; `open()` it, then `authenticate()`.

    `stop_waiting()` says when to give up waiting for an unreachable controller at registration
    (the agent started draining meanwhile).
    """

    def __init__(
        self,
        settings: AgentSettings,
        executors: tuple[str, ...],
        version: str,
        stop_waiting: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.executors = executors
        self.version = version
        self.agent_id = ""
        self.heartbeat_interval_s = DEFAULT_HEARTBEAT_MS / 1000
        self._stop_waiting = stop_waiting
        self._client: ControllerClient | None = None
        self._auth_lock = asyncio.Lock()
        self._reregistered = False
        self._auth_ok_since_register = True
        self._on_new_token: list[Callable[[], None]] = []
        #: Has any call reached the controller since the start? (See `stop_if_misconfigured`.)
        self.connected = False
        self._probed = False

    def open(self) -> ControllerClient:
        """Make the client (a lazy channel: nothing is sent until the first call); the caller closes it."""
        settings = self.settings
        ca_pem = None
        if settings.tls and settings.ca_file is not None:
            try:
                ca_pem = read_ca_file(settings.ca_file)
            except ValueError as exc:
                raise AgentExit(2, str(exc)) from None
        self._client = ControllerClient(settings.controller, tls=settings.tls, ca_pem=ca_pem)
        return self._client

    @property
    def address(self) -> str:
        """The controller's address as the person wrote it (grpcs:// for TLS), for messages."""
        return f"{TLS_SCHEME if self.settings.tls else ''}{self.settings.controller}"

    async def transport_problem(self, failure: RpcFailure) -> str | None:
        """Why the controller cannot be reached when retrying cannot help (a TLS mismatch), or None.

        Why: gRPC reports a wrong CA or a plaintext agent at a TLS port as UNAVAILABLE, like a
        controller that is restarting. Until the agent has reached the controller once, such a
        failure is a configuration error the person must fix: `register` and the Lease stream stop
        the agent with this sentence. A plaintext agent sees a TLS port only as a closed socket,
        so that case is probed once (one TLS handshake, nothing sent).
        """
        if failure.code != UNAVAILABLE:
            return None
        settings = self.settings
        explained = explain_handshake_failure(failure.details, settings.controller, settings.ca_file)
        if explained is not None or settings.tls or self._probed or "refused" in failure.details.lower():
            return explained
        self._probed = True
        host, _, port = settings.controller.rpartition(":")
        if await speaks_tls(host, int(port)):
            return (
                f"the controller at {settings.controller} speaks TLS and this agent does not: write the "
                f"address as --controller {TLS_SCHEME}{settings.controller} (with --ca-file CA.pem when "
                "its certificate is not signed by a CA the system trusts)"
            )
        return None

    async def stop_if_misconfigured(self, failure: RpcFailure) -> str | None:
        """End the agent (AgentExit) when `failure` is a transport mismatch before any contact.

        Returns the explanation when the agent did reach the controller before (then the caller
        logs it and retries: a controller being reconfigured may come back), else None.
        """
        problem = await self.transport_problem(failure)
        if problem is not None and not self.connected:
            raise AgentExit(1, problem)
        return problem

    @property
    def client(self) -> ControllerClient:
        """The client opened by `open()`."""
        assert self._client is not None, "Session.open() first"
        return self._client

    def on_new_token(self, reopen: Callable[[], None]) -> None:
        """Call `reopen` after a re-registration: a stream carries the token it was opened with."""
        self._on_new_token.append(reopen)

    async def authenticate(self) -> None:
        """Use the stored agent token for this controller, or register to get one."""
        settings = self.settings
        try:
            state = load_state(settings.state_dir)
        except StateError as exc:
            raise AgentExit(2, str(exc)) from None
        if state is not None and state.controller == settings.controller:
            self._use_state(state)
            log.info("using the stored identity %s from %s", state.agent_id, settings.state_dir)
            return
        if state is not None:
            log.info(
                "%s holds an identity for controller %s, not %s: registering",
                settings.state_dir,
                state.controller,
                settings.controller,
            )
        await self.register()

    def _use_state(self, state: AgentState) -> None:
        self.agent_id = state.agent_id
        self.client.token = state.agent_token
        if state.heartbeat_interval_ms > 0:
            self.heartbeat_interval_s = state.heartbeat_interval_ms / 1000

    async def register(self) -> None:
        """RegisterRequest with our name, labels, executors, capacity and version; store the token.

        Retried with backoff while the controller is unreachable (RETRY); any other refusal ends the
        agent with the reason, since registering again the same way cannot succeed.
        """
        settings = self.settings
        if not settings.registration_token:
            raise AgentExit(
                2,
                f"no agent token in {settings.state_dir} and no registration token: pass "
                "--registration-token (or set BUILDIT_REGISTRATION_TOKEN) to register this agent",
            )
        request = RegisterRequest(
            registration_token=settings.registration_token,
            name=settings.name,
            labels=dict(settings.labels),
            executors=self.executors,
            capacity=settings.capacity,
            version=self.version,
        )
        backoff = Backoff()
        attempts = 0
        while True:
            try:
                response = await self.client.register(request)
                break
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=False)
                if kind is FailureKind.REAUTHENTICATE:  # the registration token itself is refused
                    raise AgentExit(
                        1,
                        f"registration refused by {settings.controller}: {exc.details or exc.code} "
                        "(check --registration-token)",
                    ) from None
                if kind is FailureKind.FATAL and exc.code == FAILED_PRECONDITION:
                    raise AgentExit(
                        1,
                        f"controller {settings.controller} refused agent version {self.version}: "
                        f"{exc.details or exc.code}",
                    ) from None
                if kind is not FailureKind.RETRY:
                    raise AgentExit(1, f"registration with {settings.controller} failed: {exc}") from None
                problem = await self.stop_if_misconfigured(exc)
                delay = backoff.next()
                attempts += 1
                if attempts == 1 or attempts % 12 == 0:
                    log.warning("controller %s unreachable (%s); retrying", self.address, problem or exc)
            if await sleep_unless(delay, self._stop_waiting):
                return
        if not response.agent_id or not response.agent_token:
            raise AgentExit(1, f"controller {settings.controller} returned no agent id or token")
        state = AgentState(
            agent_id=response.agent_id,
            agent_token=response.agent_token,
            controller=settings.controller,
            heartbeat_interval_ms=max(response.heartbeat_interval_ms, 0),
        )
        try:
            save_state(settings.state_dir, state)
        except OSError as exc:
            raise AgentExit(1, f"cannot store the agent token in {settings.state_dir}: {exc}") from None
        self._use_state(state)
        self.connected = True
        self.heartbeat_interval_s = (response.heartbeat_interval_ms or DEFAULT_HEARTBEAT_MS) / 1000
        log.info(
            "registered with %s as %s (controller %s)",
            self.address,
            response.agent_id,
            response.controller_version or "?",
        )

    async def reauthenticate(self, failed_token: str, failure: RpcFailure) -> None:
        """The controller refused our token: register again once, if we can, else stop.

        Several calls can fail at the same moment with the same token; the first re-registers and the
        others see the new token and simply retry.
        """
        async with self._auth_lock:
            if self.client.token != failed_token:
                return
            state_file = self.settings.state_dir / "agent.json"
            if not self.settings.registration_token:
                raise AgentExit(
                    1,
                    f"the controller does not accept the agent token in {state_file} ({failure}); pass "
                    "--registration-token to register again",
                )
            if self._reregistered and not self._auth_ok_since_register:
                raise AgentExit(1, f"the controller refused the token it just issued ({failure})")
            log.warning("the controller does not accept our agent token (%s): registering again", failure)
            clear_state(self.settings.state_dir)
            await self.register()
            self._reregistered = True
            self._auth_ok_since_register = False
            # Streams carry the token from when they were opened: reopen them with the new one.
            for reopen in self._on_new_token:
                reopen()

    def authenticated(self) -> None:
        """A call with the current token worked (so a later refusal is worth one re-registration)."""
        self._auth_ok_since_register = True
        self.connected = True
