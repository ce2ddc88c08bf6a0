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


def collect_artifacts(workspace: Path, patterns: Iterable[str], dest: Path) -> tuple[list[str], list[str]]:
    """Copy files matching `patterns` from `workspace` to `dest`, keeping relative paths.

    Returns (copied relative paths, patterns that matched nothing). Raises `ArtifactError` for a
    pattern or a match that would leave the workspace (including symlinks that point out).
    """
    root = workspace.resolve()
    copied: list[str] = []
    empty: list[str] = []
    for pattern in patterns:
        _check_pattern(pattern)
        matches = sorted(root.glob(pattern))
        if not matches:
            empty.append(pattern)
        for match in matches:
            for file in _files_under(match, root):
                rel = file.relative_to(root).as_posix()
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target, follow_symlinks=True)
                copied.append(rel)
    return sorted(set(copied)), empty


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


def restore_artifacts(store: Path, workspace: Path) -> list[str]:
    """Copy every file under `store` into `workspace` at the same relative path."""
    restored: list[str] = []
    if not store.is_dir():
        return restored
    root = workspace.resolve()
    for file in sorted(p for p in store.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = file.relative_to(store)
        target = root / rel
        if not _inside(target.parent, root):
            raise ArtifactError(f"artifact '{rel.as_posix()}' would be restored outside the workspace")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or (target.exists() and not target.is_file()):
            # Never write through a link the workspace holds: replace it with the artifact.
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        shutil.copy2(file, target)
        restored.append(rel.as_posix())
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
