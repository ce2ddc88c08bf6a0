"""Stage logs: one append-only file per stage attempt under the data dir, addressed by byte offset.

The database records how many bytes of each log were acknowledged (`StageRun.log_size`). A
controller killed between writing a chunk and recording it leaves extra bytes at the end of the
file; the first append after a restart truncates the file back to the recorded size, so the
chunk the agent re-sends is stored exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID


class LogStore:
    """Reads and appends stage log files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, run_id: UUID, stage: str, attempt: int) -> Path:
        """Where one attempt's log lives."""
        return self.root / str(run_id) / f"{stage}.{attempt}.log"

    def append(self, path: Path, offset: int, data: bytes, verify: bool = True) -> int:
        """Write `data` at `offset` (the recorded size); returns the new size."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            if verify and os.fstat(fd).st_size != offset:
                os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
        return offset + len(data)

    def read(self, path: Path, offset: int, size: int, limit: int = 4 * 1024 * 1024) -> bytes:
        """Bytes [offset, min(size, offset + limit)) of a log; empty when absent or past the end."""
        if offset >= size or not path.exists():
            return b""
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(min(size - offset, limit))
