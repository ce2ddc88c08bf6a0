"""Artifacts of a stage: the ones it needs downloaded into its workspace, the ones it makes uploaded.

A stage with `needs` gets the artifacts of those stages (DownloadArtifacts: each file's header,
then its chunks, checked against the announced size and sha256) before its commands run. After the
commands succeeded, the files matching its `artifacts` globs are uploaded one by one
(UploadArtifact: header, then ARTIFACT_CHUNK_BYTES chunks), and only then is SUCCEEDED reported,
so a dependent stage never starts without them. Paths follow `agent.workspace`'s rules (nothing
read or written outside the workspace). Both directions are retried from the start while the
controller is unreachable, without end while the agent serves and up to its `--report-wait` once it
is stopping (then the stage ends in ERROR, a result kept for the next start); a broken rule, a
corrupted file or a refused transfer ends the stage in ERROR with a one-line message, and a lost
lease (LEASE_GONE, see `agent.client.classify`) stops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from agent.backoff import Backoff
from agent.client import RESOURCE_EXHAUSTED, UNIMPLEMENTED, FailureKind, RpcFailure, classify
from agent.contract.types import ArtifactAck, ArtifactHeader, ArtifactPart, ExecutionResult, StageStatus
from agent.reporting import ReportBound
from agent.session import Session
from agent.workspace import ArtifactError, create_artifact_file, find_artifacts

if TYPE_CHECKING:  # agent.stage runs the transfers: a runtime import would be circular
    from agent.stage import Stage

__all__ = ["ARTIFACT_CHUNK_BYTES", "ArtifactTransfer"]

log = logging.getLogger("agent")

#: Size of the data chunks of artifact uploads (the wire allows up to 1 MiB).
ARTIFACT_CHUNK_BYTES: Final = 256 * 1024
#: An upload may take this long plus one second per MiB before it is given up (and retried).
_UPLOAD_BASE_TIMEOUT_S: Final = 60.0
#: Files listed one by one in the stage log after an upload; beyond that only the total.
_LISTED_ARTIFACTS: Final = 20


class ArtifactTransfer:
    """Moves the artifacts of the agent's stages; `lose(lease_id, why)` is called when a lease is gone."""

    def __init__(
        self, session: Session, lose: Callable[[str, str], None], bound: ReportBound | None = None
    ) -> None:
        self._session = session
        self._lose = lose
        self._bound = bound if bound is not None else ReportBound()

    def _gave_up(self, since: float | None, what: str) -> ExecutionResult | None:
        """ERROR once a stopping agent waited its bound for an unreachable controller, else None.

        Why: a transfer retried without end would keep a stopping agent up as long as the controller
        is down; ended here, the stage's result is kept like any other unreported result.
        """
        if since is None or not self._bound.expired(since):
            return None
        message = (
            f"cannot {what}: the controller at {self._session.address} was unreachable while the "
            "agent was stopping"
        )
        return ExecutionResult(StageStatus.ERROR, message=message)

    async def download(
        self, stage: Stage, workspace: Path, say: Callable[[str], None]
    ) -> ExecutionResult | None:
        """Write the artifacts of the stages this one needs into its workspace (DownloadArtifacts).

        Retried from the start while the controller is unreachable (every file is simply written
        again); a refused path or a corrupted file ends the stage in ERROR.
        """
        client = self._session.client
        needs = ", ".join(stage.lease.spec.needs)
        backoff = Backoff()
        unreachable_since: float | None = None
        while not stage.lost:
            token = client.token
            try:
                files, size, producers = await self._receive(stage, workspace)
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, f"DownloadArtifacts: {exc}")
                    return ExecutionResult(StageStatus.ERROR, message="lease lost")
                if kind is FailureKind.REAUTHENTICATE:
                    await self._session.reauthenticate(token, exc)
                    continue
                if kind is FailureKind.RETRY:
                    unreachable_since = unreachable_since or asyncio.get_running_loop().time()
                    if gave_up := self._gave_up(unreachable_since, f"download the artifacts of {needs}"):
                        say(f"error: {gave_up.message}")
                        return gave_up
                    delay = backoff.next()
                    log.debug("artifact download failed (%s); retrying", exc)
                    await asyncio.sleep(delay)
                    continue
                if exc.code == UNIMPLEMENTED:
                    message = (
                        "the controller cannot send artifacts (DownloadArtifacts unimplemented): upgrade it"
                    )
                else:
                    message = f"cannot download the artifacts of {needs}: {exc.details or exc.code}"
                say(f"error: {message}")
                return ExecutionResult(StageStatus.ERROR, message=message)
            except (ArtifactError, _TransferError) as exc:
                say(f"error: {exc}")
                return ExecutionResult(StageStatus.ERROR, message=str(exc))
            except OSError as exc:
                message = f"cannot write the artifacts of {needs} into the workspace: {exc}"
                say(f"error: {message}")
                return ExecutionResult(StageStatus.ERROR, message=message)
            stage.restored_artifacts = files
            if files:  # silence when the needed stages made none: most stages declare no artifacts
                say(f"restored {files} artifact file(s), {size} bytes, from {', '.join(producers)}")
            return None
        return ExecutionResult(StageStatus.ERROR, message="lease lost")

    async def _receive(self, stage: Stage, workspace: Path) -> tuple[int, int, list[str]]:
        """One DownloadArtifacts call written to disk; returns (files, bytes, producing stages)."""
        client = self._session.client
        incoming: _Incoming | None = None
        files = size = 0
        producers: list[str] = []
        try:
            async for part in client.download_artifacts(stage.lease_id):
                if isinstance(part, ArtifactHeader):
                    if incoming is not None:
                        await incoming.finish()
                    handle = await asyncio.to_thread(create_artifact_file, workspace, part.path)
                    incoming = _Incoming(part, handle)
                    files += 1
                    size += part.size
                    if part.stage and part.stage not in producers:
                        producers.append(part.stage)
                elif incoming is None:
                    raise _TransferError("the controller sent artifact data before any header")
                else:
                    await incoming.write(part)
            if incoming is not None:
                await incoming.finish()
                incoming = None
        finally:
            if incoming is not None:
                incoming.handle.close()
        return files, size, producers

    async def upload(
        self, stage: Stage, workspace: Path, say: Callable[[str], None]
    ) -> ExecutionResult | None:
        """Upload the files matching the stage's artifact globs, one UploadArtifact call each."""
        spec = stage.lease.spec
        try:
            files, empty = await asyncio.to_thread(find_artifacts, workspace, spec.artifacts)
        except (ArtifactError, OSError) as exc:
            message = f"artifacts: {exc}"
            say(f"error: {message}")
            return ExecutionResult(StageStatus.ERROR, message=message)
        for pattern in empty:
            say(f"warning: artifact pattern '{pattern}' matched no files")
        total = 0
        for rel, file in files:
            try:
                size, digest = await asyncio.to_thread(_size_and_sha256, file)
            except OSError as exc:
                message = f"artifacts: cannot read '{rel}': {exc.strerror or exc}"
                say(f"error: {message}")
                return ExecutionResult(StageStatus.ERROR, message=message)
            outcome = await self._upload_one(stage, ArtifactHeader(stage.lease_id, rel, size, digest), file)
            if isinstance(outcome, ExecutionResult):
                if not stage.lost:
                    say(f"error: {outcome.message}")
                return outcome
            total += size
            if len(files) <= _LISTED_ARTIFACTS:
                dedup = ", already stored" if outcome.deduplicated else ""
                say(f"uploaded artifact {rel} ({size} bytes{dedup})")
        if files:
            say(f"uploaded {len(files)} artifact file(s), {total} bytes")
        return None

    async def _upload_one(
        self, stage: Stage, header: ArtifactHeader, file: Path
    ) -> ArtifactAck | ExecutionResult:
        """One artifact, retried from its start while the controller is unreachable."""
        client = self._session.client
        timeout = _UPLOAD_BASE_TIMEOUT_S + header.size / (1024 * 1024)
        backoff = Backoff()
        unreachable_since: float | None = None
        while not stage.lost:
            token = client.token
            try:
                return await client.upload_artifact(_artifact_parts(header, file), timeout)
            except RpcFailure as exc:
                kind = classify(exc.code, lease_scoped=True)
                if kind is FailureKind.LEASE_GONE:
                    self._lose(stage.lease_id, f"UploadArtifact: {exc}")
                    break
                if kind is FailureKind.REAUTHENTICATE:
                    await self._session.reauthenticate(token, exc)
                    continue
                if kind is FailureKind.RETRY:
                    unreachable_since = unreachable_since or asyncio.get_running_loop().time()
                    if gave_up := self._gave_up(unreachable_since, f"upload artifact '{header.path}'"):
                        return gave_up
                    delay = backoff.next()
                    log.debug("upload of %s failed (%s); retrying", header.path, exc)
                    await asyncio.sleep(delay)
                    continue
                if exc.code == RESOURCE_EXHAUSTED:
                    return ExecutionResult(StageStatus.ERROR, message=exc.details or str(exc))
                if exc.code == UNIMPLEMENTED:
                    return ExecutionResult(
                        StageStatus.ERROR,
                        message="the controller does not accept artifacts (UploadArtifact "
                        "unimplemented): upgrade it",
                    )
                return ExecutionResult(
                    StageStatus.ERROR,
                    message=f"cannot upload artifact '{header.path}': {exc.details or exc.code}",
                )
        return ExecutionResult(StageStatus.ERROR, message="lease lost")


class _TransferError(Exception):
    """A downloaded artifact does not match its header (size or sha256) or arrived out of order."""


class _Incoming:
    """One artifact being written during DownloadArtifacts, checked against its header at the end."""

    def __init__(self, header: ArtifactHeader, handle: BinaryIO) -> None:
        self.header = header
        self.handle = handle
        self.written = 0
        self.digest = hashlib.sha256()

    async def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.written > self.header.size:
            raise _TransferError(
                f"artifact '{self.header.path}' is larger than the {self.header.size} bytes announced"
            )
        self.digest.update(data)
        await asyncio.to_thread(self.handle.write, data)

    async def finish(self) -> None:
        await asyncio.to_thread(self.handle.close)
        header = self.header
        if self.written != header.size:
            raise _TransferError(
                f"artifact '{header.path}' arrived with {self.written} of its {header.size} bytes"
            )
        if header.sha256 and self.digest.hexdigest() != header.sha256:
            raise _TransferError(f"artifact '{header.path}' arrived corrupted (sha256 mismatch)")


def _size_and_sha256(file: Path) -> tuple[int, str]:
    """Size and hex sha256 of a file (the upload header announces both before the content)."""
    digest = hashlib.sha256()
    size = 0
    with open(file, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def _artifact_parts(header: ArtifactHeader, file: Path) -> AsyncIterator[ArtifactPart]:
    """An UploadArtifact request stream: the header, then the file in ARTIFACT_CHUNK_BYTES chunks."""
    yield header
    handle = await asyncio.to_thread(open, file, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, ARTIFACT_CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()
