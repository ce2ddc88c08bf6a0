"""Content-addressed artifact files under the data dir: `<root>/<sha256[:2]>/<sha256>`.

Why content addressing: the same file uploaded by many runs (a vendored tarball, an unchanged
report) is stored once, and a file's name says what it holds, so a reader can never see half of
one. An upload is streamed to `<root>/tmp/` while it is hashed and counted, checked against what
its sender announced (size, sha256) and the caller's byte limit, made durable (fsync), and only
then linked into place. Linking (not renaming) decides races between identical concurrent
uploads: exactly one creates the file, the others find it there and count as deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

__all__ = [
    "CHUNK_BYTES",
    "ArtifactCorrupt",
    "ArtifactMissing",
    "ArtifactStore",
    "ArtifactStoreError",
    "ArtifactTooLarge",
    "StoredBlob",
]

#: Size of the chunks `read` yields (what DownloadArtifacts sends).
CHUNK_BYTES: Final = 256 * 1024
#: Content stored or deduplicated this recently is never discarded (see `ArtifactStore.discard`).
DISCARD_GRACE_S: Final = 60.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ArtifactStoreError(Exception):
    """Something about stored or uploaded artifact content; the message says what."""


class ArtifactTooLarge(ArtifactStoreError):
    """An upload went over the byte limit it was given; nothing was stored."""

    def __init__(self, limit: int, received: int) -> None:
        super().__init__(f"more than {limit} bytes (received {received} so far)")
        self.limit = limit
        self.received = received


class ArtifactCorrupt(ArtifactStoreError):
    """What arrived does not match what the sender announced (size or sha256); nothing was stored."""


class ArtifactMissing(ArtifactStoreError):
    """No content is stored under that sha256 (or the sha256 is malformed)."""


@dataclass(frozen=True)
class StoredBlob:
    """Where an upload went: its content address and size; `deduplicated` when it was already held."""

    sha256: str
    size: int
    deduplicated: bool


class ArtifactStore:
    """Artifact content on the local file system (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        """Use (and create) `root`, normally `<data dir>/artifacts`."""
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        # Uploads a crash cut short; one controller owns its data dir, so none is in flight now.
        for leftover in self.tmp.glob("*.part"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def path(self, sha256: str) -> Path:
        """The file holding the content `sha256` (whether or not it exists).

        Raises ArtifactMissing for anything but 64 lowercase hex digits, so a crafted value can
        never name a path outside the store.
        """
        if not _SHA256.fullmatch(sha256):
            raise ArtifactMissing(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether the content `sha256` is stored."""
        try:
            return self.path(sha256).is_file()
        except ArtifactMissing:
            return False

    def open(self, sha256: str) -> BinaryIO:
        """The stored content for reading; ArtifactMissing when it is not there."""
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact content {sha256} is missing from {self.root}") from None

    async def read(self, sha256: str, chunk_size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        """The stored content in chunks (file reads happen off the event loop)."""
        handle = await asyncio.to_thread(self.open, sha256)
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        limit: int | None = None,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
    ) -> StoredBlob:
        """Store the content `chunks` yields; returns its address, size and whether it was new.

        Raises ArtifactTooLarge as soon as more than `limit` bytes arrived (the rest is not read),
        ArtifactCorrupt when the total differs from `expected_size` or the digest from
        `expected_sha256`; in both cases nothing is stored. Whatever the iterator raises is
        raised too, also with nothing stored.
        """
        if expected_size is not None and limit is not None and expected_size > limit:
            raise ArtifactTooLarge(limit, expected_size)
        digest = hashlib.sha256()
        size = 0
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
        handle = open(tmp, "xb")  # noqa: SIM115 - closed in the finally below, across awaits
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise ArtifactTooLarge(limit, size)
                    if expected_size is not None and size > expected_size:
                        raise ArtifactCorrupt(f"more than the {expected_size} bytes announced arrived")
                    digest.update(chunk)
                    # Inline: a chunk lands in the page cache in well under a millisecond.
                    handle.write(chunk)
                if expected_size is not None and size != expected_size:
                    raise ArtifactCorrupt(f"{size} bytes arrived, {expected_size} were announced")
                sha256 = digest.hexdigest()
                if expected_sha256 and sha256 != expected_sha256:
                    raise ArtifactCorrupt(
                        f"the content's sha256 is {sha256}, {expected_sha256} was announced"
                    )
                await asyncio.to_thread(_flush_and_sync, handle)
            finally:
                handle.close()
            return await asyncio.to_thread(self._commit, tmp, sha256, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _commit(self, tmp: Path, sha256: str, size: int) -> StoredBlob:
        """Link the verified temporary file into place, unless the content is already there."""
        final = self.path(sha256)
        final.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, final)
        except FileExistsError:
            # Marks the content as just used: `discard` leaves recently used content alone, so an
            # upload that found it here is never left pointing at a file deleted meanwhile.
            with contextlib.suppress(OSError):
                os.utime(final)
            return StoredBlob(sha256, size, deduplicated=True)
        _sync_dir(final.parent)
        return StoredBlob(sha256, size, deduplicated=False)

    def discard(self, sha256: str, grace_s: float = DISCARD_GRACE_S) -> bool:
        """Delete stored content no artifact row points at any more (the caller checked that);
        False when it is absent or was stored or deduplicated within `grace_s` seconds, since an
        upload finishing now may be about to point a new row at it. Blocking: use a worker thread.
        """
        try:
            path = self.path(sha256)
            if time.time() - path.stat().st_mtime < grace_s:
                return False
            path.unlink()
        except (ArtifactMissing, OSError):
            return False
        return True


def _flush_and_sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _sync_dir(directory: Path) -> None:
    """Make a new directory entry durable (a crash right after must not lose the link)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
