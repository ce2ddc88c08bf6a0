"""Stage workspaces: filling them, and moving artifacts out of and into them safely.

Artifact paths come from pipeline files and from whatever a stage left in its workspace, so
every path is checked: nothing outside the workspace is read (no `..`, no absolute paths, no
symlinks pointing out) and nothing is written outside the destination.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from agent.contract.paths import artifact_path_problem


class ArtifactError(Exception):
    """An artifact path is unsafe or unreadable; the message names the path and the rule."""


def _check_pattern(pattern: str) -> None:
    parts = PurePosixPath(pattern).parts
    if pattern.startswith("/") or PurePosixPath(pattern).is_absolute():
        raise ArtifactError(f"artifact pattern '{pattern}' is absolute; use a path relative to the workspace")
    if ".." in parts:
        raise ArtifactError(
            f"artifact pattern '{pattern}' contains '..'; artifacts must stay in the workspace"
        )


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def find_artifacts(workspace: Path, patterns: Iterable[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files matching `patterns` in `workspace`, checked, without copying anything.

    Returns ([(relative '/'-separated path, file to read)] sorted by path and without duplicates,
    patterns that matched nothing). Raises `ArtifactError` for a pattern or a match that would leave
    the workspace (including symlinks that point out). Why separate from copying: the agent streams
    the files to the controller straight from the workspace, under the same rules as `buildit run`.
    """
    root = workspace.resolve()
    found: dict[str, Path] = {}
    empty: list[str] = []
    for pattern in patterns:
        _check_pattern(pattern)
        matches = sorted(root.glob(pattern))
        if not matches:
            empty.append(pattern)
        for match in matches:
            for file in _files_under(match, root):
                found.setdefault(file.relative_to(root).as_posix(), file)
    return sorted(found.items()), empty


def collect_artifacts(workspace: Path, patterns: Iterable[str], dest: Path) -> tuple[list[str], list[str]]:
    """Copy files matching `patterns` from `workspace` to `dest`, keeping relative paths.

    Returns (copied relative paths, patterns that matched nothing). Raises `ArtifactError` for a
    pattern or a match that would leave the workspace (including symlinks that point out).
    """
    files, empty = find_artifacts(workspace, patterns)
    for rel, file in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target, follow_symlinks=True)
    return [rel for rel, _ in files], empty


def _files_under(match: Path, root: Path) -> list[Path]:
    """Regular files at or below `match`, refusing anything that escapes `root`."""
    rel = match.relative_to(root).as_posix()
    if not _inside(match, root):
        raise ArtifactError(f"artifact '{rel}' is a symlink pointing outside the workspace; refusing it")
    if match.is_file():
        return [match]
    files: list[Path] = []
    if match.is_dir():
        for dirpath, dirnames, filenames in os.walk(match, followlinks=False):
            base = Path(dirpath)
            for name in [*filenames, *(d for d in dirnames if (base / d).is_symlink())]:
                path = base / name
                if not _inside(path, root):
                    raise ArtifactError(
                        f"artifact '{path.relative_to(root).as_posix()}' is a symlink pointing outside "
                        "the workspace; refusing it"
                    )
                if path.is_file():
                    files.append(path)
    return files


def artifact_target(workspace: Path, rel: str) -> Path:
    """Where artifact `rel` goes in `workspace`, after checking that it stays inside.

    Directories on the way are created; a symlink or directory already at the target itself is
    removed, so the artifact replaces it instead of being written through it. Symlinks in the
    parent path are followed only when they resolve inside the workspace. Raises ArtifactError.
    """
    problem = artifact_path_problem(rel)
    if problem is not None:
        raise ArtifactError(problem)
    root = workspace.resolve()
    target = root / rel
    # resolve() follows every link of the existing prefix, so a parent that is a symlink out of the
    # workspace is caught here, before anything is created through it.
    if not _inside(target.parent, root):
        raise ArtifactError(f"artifact '{rel}' would be restored outside the workspace")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(target.parent, root):  # a race with something else writing the workspace
        raise ArtifactError(f"artifact '{rel}' would be restored outside the workspace")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    return target


def create_artifact_file(workspace: Path, rel: str) -> BinaryIO:
    """Open artifact `rel` for writing in `workspace` (truncating), never through a symlink.

    See `artifact_target` for the checks; the file is opened with O_NOFOLLOW, so a link that
    appeared at the target after the check makes this fail instead of writing elsewhere.
    """
    target = artifact_target(workspace, rel)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "wb")


def restore_artifacts(store: Path, workspace: Path) -> list[str]:
    """Copy every file under `store` into `workspace` at the same relative path."""
    restored: list[str] = []
    if not store.is_dir():
        return restored
    for file in sorted(p for p in store.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = file.relative_to(store).as_posix()
        target = artifact_target(workspace, rel)
        shutil.copy2(file, target)
        restored.append(rel)
    return restored


SKIP_DIRS = frozenset({".git", ".buildit", ".venv", "__pycache__", "node_modules"})


def copy_source(source: Path, files: list[str] | None, workspace: Path) -> int:
    """Fill `workspace` from `source`: exactly `files` when given (Git-tracked), else the whole tree.

    Returns the number of files copied. Missing tracked files (deleted but not committed) are skipped.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    count = 0
    if files is None:
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            base = Path(dirpath)
            target_dir = workspace / base.relative_to(source)
            target_dir.mkdir(parents=True, exist_ok=True)
            for name in filenames:
                shutil.copy2(base / name, target_dir / name, follow_symlinks=False)
                count += 1
            for name in [d for d in dirnames if (base / d).is_symlink()]:
                os.symlink(os.readlink(base / name), target_dir / name)
                count += 1
        return count
    for rel in files:
        src = source / rel
        if not (src.is_file() or src.is_symlink()):
            continue
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
        count += 1
    return count
