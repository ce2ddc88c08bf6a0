"""The agent's connection to the controller: AgentService over one grpc.aio channel, in dataclasses.

Why a wrapper: the agent's loops should reason about the protocol (leases, acks, fencing), not about
grpc call objects, metadata tuples or proto classes. Requests and responses are the dataclasses of
`agent.contract.types` (the codecs come from `agent.contract.convert`, the only agent module that
touches proto types), every call but Register carries `authorization: Bearer <agent token>`, and every
gRPC failure surfaces as one exception type, `RpcFailure`, carrying the status code name.

What a failure means is decided in one place, `classify`, so every caller in the agent reads a status
code the same way. It follows the controller's one mapping of its error tree to gRPC codes (NotFound
NOT_FOUND, Invalid INVALID_ARGUMENT, Conflict FAILED_PRECONDITION, AlreadyExists ALREADY_EXISTS,
LeaseLost ABORTED, Unauthenticated UNAUTHENTICATED, Forbidden PERMISSION_DENIED, TooLarge
RESOURCE_EXHAUSTED, Unavailable UNAVAILABLE, anything unexpected INTERNAL or UNKNOWN):

    code                 lease-scoped call     other call       why
    -------------------  --------------------  ---------------  ---------------------------------------
    UNAUTHENTICATED      REAUTHENTICATE        REAUTHENTICATE   the agent token is unknown or revoked
    ABORTED              LEASE_GONE            RETRY            LeaseLost: the lease is someone else's
    NOT_FOUND            LEASE_GONE            FATAL            no such lease (any more)
    UNAVAILABLE          RETRY                 RETRY            controller away, restarting, overloaded
    DEADLINE_EXCEEDED    RETRY                 RETRY            no answer in time
    INTERNAL, UNKNOWN    RETRY                 RETRY            a controller bug or crash mid-call
    CANCELLED            RETRY                 RETRY            the call was cut (proxy, server shutdown)
    PERMISSION_DENIED    FATAL                 FATAL            Forbidden: the agent is not allowed
    INVALID_ARGUMENT     FATAL                 FATAL            the request itself is refused
    FAILED_PRECONDITION  FATAL                 FATAL            Conflict (e.g. an incompatible version)
    ALREADY_EXISTS       FATAL                 FATAL            the same request cannot succeed later
    RESOURCE_EXHAUSTED   FATAL                 FATAL            TooLarge (e.g. artifacts over the limit)
    UNIMPLEMENTED        FATAL                 FATAL            the controller lacks the method
    OUT_OF_RANGE         FATAL                 FATAL            the request itself is refused
    DATA_LOSS            FATAL                 FATAL            content corrupted; sending it again
                                                                reproduces it
    any other name       FATAL                 FATAL            OK or a code this build does not know

A lease-scoped call is one about one lease (UpdateStage, ExtendLease, UploadArtifact,
DownloadArtifacts); the Lease stream, StreamLogs, Heartbeat and Register are not. ABORTED outside a
lease is gRPC's "retry at a higher level". FATAL is fatal for that call only: its caller decides what
that means (registration: the agent exits with the reason; a stage's write: the stage ends in ERROR;
the Lease stream, StreamLogs or a heartbeat: the agent exits, its running stages' leases expire and
are retried). A call the agent cancelled itself also ends as RpcFailure(CANCELLED); its caller
cancelled it for a reason it already acts on (draining, a new token), so RETRY is right there too.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final, cast

import grpc

from agent.contract import convert
from agent.contract.types import (
    ArtifactAck,
    ArtifactPart,
    ExtendLeaseResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseEvent,
    LeaseRequest,
    LogAck,
    LogChunk,
    RegisterRequest,
    RegisterResponse,
    StageStatus,
    StageUpdate,
)

__all__ = [
    "ABORTED",
    "CANCELLED",
    "DATA_LOSS",
    "DEADLINE_EXCEEDED",
    "FAILED_PRECONDITION",
    "INTERNAL",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "UNIMPLEMENTED",
    "UNKNOWN",
    "ControllerClient",
    "FailureKind",
    "LeaseStream",
    "LogStreamCall",
    "RpcFailure",
    "classify",
    "open_channel",
]

# gRPC status code names, as carried by RpcFailure.code.
ABORTED: Final = "ABORTED"
CANCELLED: Final = "CANCELLED"
DATA_LOSS: Final = "DATA_LOSS"
DEADLINE_EXCEEDED: Final = "DEADLINE_EXCEEDED"
FAILED_PRECONDITION: Final = "FAILED_PRECONDITION"
INTERNAL: Final = "INTERNAL"
INVALID_ARGUMENT: Final = "INVALID_ARGUMENT"
NOT_FOUND: Final = "NOT_FOUND"
PERMISSION_DENIED: Final = "PERMISSION_DENIED"
RESOURCE_EXHAUSTED: Final = "RESOURCE_EXHAUSTED"
UNAUTHENTICATED: Final = "UNAUTHENTICATED"
UNAVAILABLE: Final = "UNAVAILABLE"
UNIMPLEMENTED: Final = "UNIMPLEMENTED"
UNKNOWN: Final = "UNKNOWN"

#: Unary calls give up after this long; the caller decides whether to retry.
CALL_TIMEOUT_S: Final = 10.0

# The channel's own reconnect backoff defaults to 1 s growing to 120 s, which would keep an agent
# away for minutes after a controller restart; keep it as short as the agent's own (agent.backoff).
_CHANNEL_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    # No bandwidth-delay probing: it pings with every burst of data frames, CPU on both ends for
    # a window size that stays at its default for the small messages of this protocol anyway.
    ("grpc.http2.bdp_probe", 0),
)


class RpcFailure(Exception):
    """A call to the controller failed; `code` is the gRPC status code name (e.g. "UNAVAILABLE")."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}" if details else code)
        self.code = code
        self.details = details


class FailureKind(enum.Enum):
    """What a failed call means for its caller (see the table in the module docstring)."""

    #: The lease is not (or no longer) this agent's: stop its stage, send nothing more about it.
    LEASE_GONE = "lease gone"
    #: The controller does not accept the agent token: register again (once), then repeat the call.
    REAUTHENTICATE = "reauthenticate"
    #: Transient: repeat the call after a backoff.
    RETRY = "retry"
    #: Repeating the same call cannot help: the caller gives up on it.
    FATAL = "fatal"


_ANY_CALL: Final[dict[str, FailureKind]] = {
    UNAUTHENTICATED: FailureKind.REAUTHENTICATE,
    UNAVAILABLE: FailureKind.RETRY,
    DEADLINE_EXCEEDED: FailureKind.RETRY,
    INTERNAL: FailureKind.RETRY,
    UNKNOWN: FailureKind.RETRY,
    CANCELLED: FailureKind.RETRY,
    ABORTED: FailureKind.RETRY,
}
_LEASE_CALL: Final[dict[str, FailureKind]] = {
    **_ANY_CALL,
    ABORTED: FailureKind.LEASE_GONE,
    NOT_FOUND: FailureKind.LEASE_GONE,
}


def classify(code: str, *, lease_scoped: bool) -> FailureKind:
    """The one reading of a failed call's status code (`RpcFailure.code`) used everywhere in the agent.

    Why one function: the same code must not mean "lease gone" to one caller and "register again" to
    another. `lease_scoped` says whether the call is about one lease (then ABORTED and NOT_FOUND mean
    the lease is gone); every code not listed as another kind is FATAL.
    """
    return (_LEASE_CALL if lease_scoped else _ANY_CALL).get(code, FailureKind.FATAL)


def _cancelled_by_us(cancelled: bool) -> bool:
    """Whether a CancelledError comes from our own `cancel()` of the call, not of the running task.

    grpc.aio reports a locally cancelled call as asyncio.CancelledError; turned into
    RpcFailure(CANCELLED) the caller's loop sees an ended call instead of dying as a cancelled task.
    """
    task = asyncio.current_task()
    return cancelled and (task is None or task.cancelling() == 0)


def _failure(exc: grpc.aio.AioRpcError) -> RpcFailure:
    code = exc.code()
    return RpcFailure(code.name if code is not None else UNKNOWN, str(exc.details() or ""))


class LeaseStream:
    """One open Lease call: iterate `events()` (None for an event this build does not know)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = False

    async def events(self) -> AsyncGenerator[LeaseEvent | None, None]:
        """The pushed events until the stream ends; RpcFailure when it breaks or is cancelled."""
        try:
            async for event in self._call:
                yield cast("LeaseEvent | None", event)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None
        except asyncio.CancelledError:
            if _cancelled_by_us(self._cancelled):
                raise RpcFailure(CANCELLED, "closed by the agent") from None
            raise

    def cancel(self) -> None:
        """Close the stream (the controller stops pushing on it)."""
        self._cancelled = True
        self._call.cancel()


class LogStreamCall:
    """One open StreamLogs call: write chunks, read acks, independently."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = False

    async def send(self, chunk: LogChunk) -> None:
        """Write one chunk (waits for flow control)."""
        try:
            await self._call.write(chunk)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None
        except (grpc.aio.UsageError, RuntimeError) as exc:  # written after the call ended
            raise RpcFailure(CANCELLED, str(exc)) from None
        except asyncio.CancelledError:
            if _cancelled_by_us(self._cancelled):
                raise RpcFailure(CANCELLED, "closed by the agent") from None
            raise

    async def receive(self) -> LogAck | None:
        """The next ack, or None when the controller ended the stream."""
        try:
            ack = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None
        except asyncio.CancelledError:
            if _cancelled_by_us(self._cancelled):
                raise RpcFailure(CANCELLED, "closed by the agent") from None
            raise
        if ack is grpc.aio.EOF:
            return None
        return cast(LogAck, ack)

    def cancel(self) -> None:
        """Abandon the stream."""
        self._cancelled = True
        self._call.cancel()


def open_channel(target: str, *, tls: bool = False, ca_pem: bytes | None = None) -> grpc.aio.Channel:
    """The agent's one way to make a channel to the controller (HOST:PORT), so every call shares it.

    With `tls` the controller's certificate must be signed by `ca_pem` (PEM; None: the system's
    CAs) and name the host of `target`; without it the channel is plaintext, for a controller on
    the same machine or a network the operator trusts.
    """
    options = list(_CHANNEL_OPTIONS)
    if not tls:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    return grpc.aio.secure_channel(target, credentials, options=options)


class ControllerClient:
    """AgentService calls on one channel; set `token` once registered."""

    def __init__(
        self,
        target: str,
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        tls: bool = False,
        ca_pem: bytes | None = None,
    ) -> None:
        """Open a (lazy) channel to `target` (HOST:PORT); nothing is sent until the first call."""
        self.target = target
        self.call_timeout_s = call_timeout_s
        self.token = ""
        self._channel = open_channel(target, tls=tls, ca_pem=ca_pem)
        self._register = self._unary(convert.REGISTER)
        self._heartbeat = self._unary(convert.HEARTBEAT)
        self._extend = self._unary(convert.EXTEND_LEASE)
        self._update = self._unary(convert.UPDATE_STAGE)
        self._lease = self._channel.unary_stream(
            convert.LEASE.path,
            request_serializer=convert.LEASE.serialize,
            response_deserializer=convert.LEASE.deserialize,
        )
        self._logs = self._channel.stream_stream(
            convert.STREAM_LOGS.path,
            request_serializer=convert.STREAM_LOGS.serialize,
            response_deserializer=convert.STREAM_LOGS.deserialize,
        )
        self._upload = self._channel.stream_unary(
            convert.UPLOAD_ARTIFACT.path,
            request_serializer=convert.UPLOAD_ARTIFACT.serialize,
            response_deserializer=convert.UPLOAD_ARTIFACT.deserialize,
        )
        self._download = self._channel.unary_stream(
            convert.DOWNLOAD_ARTIFACTS.path,
            request_serializer=convert.DOWNLOAD_ARTIFACTS.serialize,
            response_deserializer=convert.DOWNLOAD_ARTIFACTS.deserialize,
        )

    def _unary(self, method: convert.Method[Any, Any]) -> Any:
        return self._channel.unary_unary(
            method.path, request_serializer=method.serialize, response_deserializer=method.deserialize
        )

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    async def _call(self, callable_: Any, request: object, *, auth: bool = True) -> Any:
        try:
            return await callable_(
                request,
                timeout=self.call_timeout_s,
                metadata=self._metadata() if auth else None,
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        """Join the fleet (authenticated by the registration token inside the request)."""
        return cast(RegisterResponse, await self._call(self._register, request, auth=False))

    async def heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        """Agent liveness; extends the listed leases."""
        return cast(HeartbeatResponse, await self._call(self._heartbeat, request))

    async def extend_lease(self, lease_id: str) -> ExtendLeaseResponse:
        """Extend one lease; RpcFailure(ABORTED) when it is no longer ours."""
        return cast(ExtendLeaseResponse, await self._call(self._extend, lease_id))

    async def update_stage(self, update: StageUpdate) -> StageStatus | None:
        """Report a stage's status; returns the status the controller recorded."""
        return cast("StageStatus | None", await self._call(self._update, update))

    def open_lease_stream(self, request: LeaseRequest) -> LeaseStream:
        """Open the Lease server stream (no timeout: it lives as long as the connection)."""
        return LeaseStream(self._lease(request, metadata=self._metadata()))

    def open_log_stream(self) -> LogStreamCall:
        """Open the StreamLogs bidirectional stream."""
        return LogStreamCall(self._logs(metadata=self._metadata()))

    async def upload_artifact(self, parts: AsyncIterator[ArtifactPart], timeout: float) -> ArtifactAck:
        """Upload one artifact file: `parts` yields its ArtifactHeader, then its content in chunks.

        A client stream rather than one message, so a file of any size travels in bounded memory.
        `timeout` bounds the whole upload (the caller sizes it to the file).
        """
        try:
            return cast(ArtifactAck, await self._upload(parts, timeout=timeout, metadata=self._metadata()))
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None

    async def download_artifacts(
        self, lease_id: str, timeout: float | None = None
    ) -> AsyncGenerator[ArtifactPart, None]:
        """The artifacts the stage of `lease_id` needs: each file's ArtifactHeader, then its chunks.

        Messages this build cannot read (neither header nor data) are skipped. RpcFailure when the
        call fails, including part-way through.
        """
        call = self._download(lease_id, timeout=timeout, metadata=self._metadata())
        try:
            async for part in call:
                if part is not None:
                    yield cast(ArtifactPart, part)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        """Close the channel, ending every open call."""
        await self._channel.close(grace=None)
