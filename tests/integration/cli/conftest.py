"""Helpers to run the real `buildit` console script and build real Git repositories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BUILDIT = str(Path(sys.executable).with_name("buildit"))


def buildit(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `buildit ARGS` and capture its output (no terminal: plain prefixed lines)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [BUILDIT, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; returns stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada Tester",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
        "GIT_COMMITTER_NAME": "Ada Tester",
        "GIT_COMMITTER_EMAIL": "ada@example.test",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def make_repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Create a real Git repository holding `.buildit.kdl` (and extra files), committed."""

    def create(
        pipeline: str, message: str = "initial", files: dict[str, str] | None = None, branch: str = "main"
    ) -> Path:
        repo = tmp_path / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", branch)
        (repo / ".buildit.kdl").write_text(pipeline)
        for name, text in (files or {}).items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", message)
        return repo

    return create
