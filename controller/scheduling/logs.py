"""Stage logs: one append-only file per stage attempt under the data dir, addressed by byte offset.

Files are fanned out over 256 directories by the run id's first two hex digits
(`<root>/3f/3f9c…-uuid.<stage>.<attempt>.log`), so a new run costs no new directory (creating one
costs more CPU than the rest of storing a short log). Logs written by earlier versions, in a
directory per run (`<root>/<run id>/<stage>.<attempt>.log`), are still found by `find`.

The database records how many bytes of each log were acknowledged (`StageRun.log_size`). A
controller killed between writing a chunk and recording it leaves extra bytes at the end of the
file; the first append after a restart truncates the file back to the recorded size, so the
chunk the agent re-sends is stored exactly once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from uuid import UUID


class LogStore:
    """Reads and appends stage log files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()

    def path(self, run_id: UUID, stage: str, attempt: int) -> Path:
        """Where one attempt's log is written."""
        run = str(run_id)
        return self.root / run[:2] / f"{run}.{stage}.{attempt}.log"

    def find(self, run_id: UUID, stage: str, attempt: int) -> Path:
        """Where one attempt's log is read from: `path`, or the per-run directory of older versions."""
        path = self.path(run_id, stage, attempt)
        if not path.exists():
            legacy = self.root / str(run_id) / f"{stage}.{attempt}.log"
            if legacy.exists():
                return legacy
        return path

    def append(self, path: Path, offset: int, data: bytes, verify: bool = True) -> int:
        """Write `data` at `offset` (the recorded size); returns the new size.

        `verify` (the first append of an attempt, or the first after a restart) truncates what a
        killed controller wrote past the recorded size, and makes the directory if need be.
        """
        if verify and path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
        except FileNotFoundError:  # the directory was removed behind our back
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

    def remove_run(self, run_id: UUID, stages: dict[str, int]) -> int:
        """Delete the logs of a run: `stages` maps each stage to its last attempt (every attempt's
        file goes). Returns how many files went. Blocking file work: call it in a worker thread."""
        removed = 0
        for stage, attempts in stages.items():
            for attempt in range(1, attempts + 1):
                path = self.path(run_id, stage, attempt)
                if path.exists():
                    path.unlink(missing_ok=True)
                    removed += 1
        legacy = self.root / str(run_id)
        if legacy.is_dir():
            removed += sum(1 for _ in legacy.iterdir())
            shutil.rmtree(legacy, ignore_errors=True)
        return removed
