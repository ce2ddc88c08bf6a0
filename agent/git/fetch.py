"""Stage workspaces from Git: fetch one exact commit into a per-repository cache, check it out.

Why this shape:

* **A bare cache per repository** (`<state_dir>/git-cache/<sha256(url)[:16]>.git`) makes every fetch
  after the first incremental: Git negotiates with what the cache holds, so a new commit costs its
  new objects only, and a commit already there costs no network at all. Each fetched commit is kept
  under `refs/buildit/fetched/<sha>`, so it stays reachable (Git's housekeeping never prunes it)
  and tells the next negotiation what we have.
* **Exactly the run's commit**, never a branch, in **one request** when the server allows it:
  `agent.git.smart_http` POSTs `want <sha>` with the cache's recent commits as `have`s (no ref
  advertisement first), and `git index-pack --fix-thin` stores the pack it answers. The controller
  pins every commit it runs (`refs/buildit/pins/<sha>`), so its mirror always allows it. Anything
  else (another server, a proxy, a refusal) falls back to `git fetch <url> <sha>`, and a v0 server
  that refuses an unadvertised object by id is then asked for `refs/buildit/pins/<sha>`.
* **The workspace is a repository** at a detached HEAD: `.git` is written directly
  (`agent.git.layout`). It borrows the cache's objects (`objects/info/alternates`, as
  `git clone --shared`), never linking a file of the cache: a container gets the cache's objects
  directory read-only at the same path (`borrowed_objects`), a process on this host reads it in
  place; a stage that may not read the cache gets copies (`self_contained`). `git read-tree -u`
  writes the files.
  Its `origin` is the repository URL (credentials removed). Three git-free steps and two git
  processes (index-pack, read-tree) instead of six: a one-commit fetch and checkout takes about
  15 ms instead of 70.
* **Housekeeping off the critical path**: every fast fetch adds a pack; once there are more than
  `HOUSEKEEPING_PACKS`, `git gc` merges them in the background after the workspace is made.
* **The token never reaches argv or a log**: the one-request fetch sends it as its Authorization
  header; `git fetch` gets it as `http.extraHeader` through the GIT_CONFIG_COUNT environment
  variables. Git runs with a clean environment (no system or user config, HOME in the state dir,
  no prompts, only http(s) for fetches, no redirects) and a timeout.
  Every error is one line naming the repository (credentials removed from the URL) and the commit.
* **Concurrency**: stages of one repository share its cache, so fetches into it (and copies out of
  it, and its gc) take turns under an asyncio lock per cache. One agent process owns a state dir
  (agent.runner locks it), so no lock between processes is needed.

The `git` command does the Git work (not a Git library): the agent stays small, and `git` speaks
every transport and protocol version a server may want.

Why one module past 500 lines: the cache, the one-request fetch with its `git fetch` fallback and
the checkout share one cache layout and its invariants (which refs keep what reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from agent.contract.types import WorkspaceSource
from agent.git.layout import (
    FETCHED_PREFIX,
    adopt_pack,
    fetched,
    init_workspace_repository,
    pack_count,
    recent_fetched,
    record_fetched,
)
from agent.git.smart_http import FastFetchUnavailable, fetch_pack, proxy_configured

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GitFetchError",
    "GitFetcher",
    "cache_dir_for",
    "redact_url",
]

#: Longest a fetch (or a checkout) may take before the stage errors.
DEFAULT_TIMEOUT_S: Final = 600.0
CACHE_DIR: Final = "git-cache"
HOME_DIR: Final = "git-home"
PIN_PREFIX: Final = "refs/buildit/pins/"
#: `have`s sent with a fast fetch: the cache's newest fetched commits (a CI fetch is nearly always
#: a descendant of a recent one, so a few suffice; older ones only grow the request).
MAX_HAVES: Final = 32
#: Packs in a cache before it is repacked into one (each fast fetch adds a pack, and each workspace
#: searches every pack for its objects).
HOUSEKEEPING_PACKS: Final = 8
#: Seconds a git process gets to clean up after SIGTERM before it is killed.
STOP_GRACE_S: Final = 5.0

_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_SCHEMES: Final = ("http", "https")
# Passed through to git from the agent's environment: proxies and TLS trust, which a fetch may need
# on a company network. Nothing else: no GIT_* (tracing could print headers), no credentials.
_PASS_THROUGH: Final = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
)
_MAX_REASON: Final = 300


class GitFetchError(Exception):
    """The workspace could not be prepared; the message is one line, free of credentials."""


def redact_url(url: str) -> str:
    """`url` without credentials: user info and query removed (`http://u:p@h/r?t=x` -> `http://h/r`).

    Why: the URL goes into stage logs and error messages, which users and the controller's UI see.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def cache_dir_for(state_dir: Path, repo_url: str) -> Path:
    """The bare cache of one repository: `<state_dir>/git-cache/<sha256(url)[:16]>.git`.

    Keyed by the URL exactly as the controller sends it, so every run of one repository reuses the
    same cache, and no URL (nor anything in it) becomes a file name.
    """
    digest = hashlib.sha256(repo_url.encode("utf-8")).hexdigest()[:16]
    return state_dir / CACHE_DIR / f"{digest}.git"


@dataclass(frozen=True)
class _Result:
    code: int
    stderr: str


class GitFetcher:
    """Fills stage workspaces from Git for one agent (one instance per agent; see module docstring)."""

    def __init__(
        self, state_dir: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S, git: str | None = None
    ) -> None:
        """`git` is the command to run (default: `git` found on PATH when needed)."""
        self.state_dir = state_dir
        self.timeout_s = timeout_s
        self._git = git
        self._locks: dict[Path, asyncio.Lock] = {}
        self._swept: set[Path] = set()
        self._housekeeping: dict[Path, asyncio.Future[None]] = {}

    async def checkout(
        self,
        source: WorkspaceSource,
        workspace: Path,
        token: str,
        say: Callable[[str], None] | None = None,
        *,
        self_contained: bool = False,
    ) -> str:
        """Make `workspace` (an empty directory) a clone of `source.repo_url` at `source.commit_sha`.

        The workspace borrows the cache's objects (`borrowed_objects` names the directory);
        `self_contained=True` copies them in instead, for a stage that may not read the cache (see
        `init_workspace_repository`).

        `token` is sent as `Authorization: Bearer <token>` to the repository's server (the
        controller serves its mirrors with the agent token). `say` receives progress lines for the
        stage log. Returns the commit checked out; raises GitFetchError with a one-line message.
        """
        git = self._git or shutil.which("git")
        if git is None:
            raise GitFetchError(
                "the git command is not installed on this agent; install git (e.g. apt-get install git) "
                "to run stages of repositories"
            )
        url = source.repo_url.strip()
        shown = redact_url(url)
        sha = source.commit_sha.strip().lower()
        if not _SHA.fullmatch(sha):
            raise GitFetchError(
                f"cannot fetch {shown}: commit {source.commit_sha!r} is not a full hex commit id "
                "(40 or 64 hex digits)"
            )
        scheme = urlsplit(url).scheme.lower() if url else ""
        if scheme not in _SCHEMES or not urlsplit(url).hostname:
            raise GitFetchError(
                f"cannot fetch commit {sha} from {shown or '<empty URL>'}: the repository URL must be "
                "http:// or https:// with a host"
            )
        cache = cache_dir_for(self.state_dir, url)
        lock = self._locks.setdefault(cache, asyncio.Lock())
        async with lock:
            await self._init_cache(git, cache, url, sha)
            if cache not in self._swept:
                # Lock files a killed git left behind (an agent crash) would fail the next fetch.
                await asyncio.to_thread(_clear_stale_locks, cache)
                self._swept.add(cache)
            if fetched(cache, sha):
                if say is not None:
                    say(f"commit {sha[:12]} of {shown} is in the agent's git cache")
            else:
                if say is not None:
                    say(f"fetching commit {sha[:12]} from {shown}")
                try:
                    await self._fetch(git, cache, url, sha, token)
                except BaseException:
                    self._swept.discard(cache)  # a git killed mid-fetch may have left locks
                    raise
            # Under the lock, so no concurrent fetch's housekeeping repacks packs away mid-copy.
            try:
                await asyncio.to_thread(
                    functools.partial(
                        init_workspace_repository, cache, workspace, sha, shown, self_contained=self_contained
                    )
                )
            except (OSError, ValueError) as exc:
                raise GitFetchError(
                    f"cannot create the workspace for commit {sha} of {shown}: {exc.__class__.__name__}: "
                    f"{getattr(exc, 'strerror', None) or exc}"
                ) from None
            if pack_count(cache) > HOUSEKEEPING_PACKS:
                self._housekeeping_later(git, cache)
        await self._run_checked(
            git,
            ["-C", str(workspace), "read-tree", "--reset", "-u", sha],
            env=self._env(protocols="file"),
            what=f"cannot check out commit {sha} of {shown}",
        )
        if say is not None:
            say(f"checked out {sha[:12]} (detached HEAD)")
        return sha

    def borrowed_objects(self, source: WorkspaceSource) -> Path:
        """The cache objects directory a workspace of `source` borrows from (absolute, resolved).

        Why public: a container must see it at this same path, read-only, for `git` to work in it.
        """
        return (cache_dir_for(self.state_dir, source.repo_url.strip()) / "objects").resolve()

    # --- steps

    async def _init_cache(self, git: str, cache: Path, url: str, sha: str) -> None:
        """Create the bare cache once (in a temporary directory renamed into place: never half made)."""
        if (cache / "HEAD").is_file():
            return
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.parent / f".init-{uuid.uuid4().hex}.git"
        try:
            await self._run_checked(
                git,
                ["init", "--quiet", "--bare", str(tmp)],
                env=self._env(protocols="file"),
                what=f"cannot create the git cache for {redact_url(url)} (commit {sha})",
            )
            if cache.exists():  # left over from a crash, without HEAD: start again
                await asyncio.to_thread(shutil.rmtree, cache, True)
            os.replace(tmp, cache)
        finally:
            if tmp.exists():
                await asyncio.to_thread(shutil.rmtree, tmp, True)

    async def _has_commit(self, git: str, repo: Path, sha: str) -> bool:
        result = await self._run(
            git, ["--git-dir", str(repo), "cat-file", "-e", f"{sha}^{{commit}}"], self._env(protocols="file")
        )
        return result.code == 0

    async def _fetch(self, git: str, cache: Path, url: str, sha: str, token: str) -> None:
        """Fetch `sha` into the cache: one request when the server allows it, else `git fetch`."""
        if await self._fetch_fast(git, cache, url, sha, token):
            return
        await self._fetch_with_git(git, cache, url, sha, token)

    async def _fetch_fast(self, git: str, cache: Path, url: str, sha: str, token: str) -> bool:
        """One upload-pack request (agent.git.smart_http), indexed by `git index-pack`; False: fall back."""
        if proxy_configured():
            return False
        pack_dir = cache / "objects" / "pack"
        pack_dir.mkdir(parents=True, exist_ok=True)
        haves = recent_fetched(cache, MAX_HAVES)
        env = self._env(protocols="file")
        try:
            indexed = await asyncio.to_thread(
                _fetch_and_index, git, env, cache, url, sha, haves, token, self.timeout_s
            )
        except FastFetchUnavailable:
            return False
        name = indexed.strip().partition("\t")[2] or indexed.strip()
        if await asyncio.to_thread(adopt_pack, cache, pack_dir / f"pack-{name}.idx", sha):
            return True
        if not await self._has_commit(git, cache, sha):
            return False
        await asyncio.to_thread(record_fetched, cache, sha)
        return True

    def _housekeeping_later(self, git: str, cache: Path) -> None:
        """Merge the packs fetches piled up, after this stage's workspace is made (off its path).

        Each fast fetch adds a pack, and every object lookup searches every pack: fewer is faster. The gc
        runs under the cache's lock, so the next checkout of this repository waits for it rather
        than copying packs it is deleting.
        """
        if cache in self._housekeeping:
            return

        async def collect() -> None:
            async with self._locks.setdefault(cache, asyncio.Lock()):
                if pack_count(cache) > HOUSEKEEPING_PACKS:
                    await self._run(
                        git, ["--git-dir", str(cache), "gc", "--quiet"], self._env(protocols="file")
                    )

        task = asyncio.ensure_future(collect())
        self._housekeeping[cache] = task
        task.add_done_callback(lambda _: self._housekeeping.pop(cache, None))

    async def _fetch_with_git(self, git: str, cache: Path, url: str, sha: str, token: str) -> None:
        shown = redact_url(url)
        env = self._env(protocols="http:https", token=token)
        # fetch.unpackLimit=1 keeps what arrives as one pack instead of loose objects: a few packs
        # are faster to look up (and to copy, for a self-contained workspace) than thousands of
        # loose objects (git's own `gc --auto` merges the packs as they pile up).
        base = [
            "--git-dir", str(cache), "-c", "fetch.unpackLimit=1",
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", url,
        ]  # fmt: skip
        first = await self._run(git, [*base, f"+{sha}:{FETCHED_PREFIX}{sha}"], env)
        if first.code == 0 and await self._has_commit(git, cache, sha):
            return
        reason = _reason(first.stderr, token)
        if _hopeless(first.stderr):  # unreachable or refused: asking again by another name won't help
            raise GitFetchError(f"cannot fetch commit {sha} from {shown}: {reason}")
        pinned = await self._run(git, [*base, f"+{PIN_PREFIX}{sha}:{FETCHED_PREFIX}{sha}"], env)
        if pinned.code == 0 and await self._has_commit(git, cache, sha):
            got = await self._run_out(git, ["--git-dir", str(cache), "rev-parse", f"{FETCHED_PREFIX}{sha}"])
            if got.strip() == sha:
                return
            raise GitFetchError(
                f"cannot fetch commit {sha} from {shown}: {PIN_PREFIX}{sha} points at {got.strip()[:40]}, "
                "not at that commit"
            )
        if pinned.code == 0 or "couldn't find remote ref" in pinned.stderr.lower():
            raise GitFetchError(
                f"commit {sha} not found in {shown} (the server refused it by id: {reason}; "
                f"and has no {PIN_PREFIX}{sha}); was the repository rewritten?"
            )
        raise GitFetchError(f"cannot fetch commit {sha} from {shown}: {_reason(pinned.stderr, token)}")

    # --- running git

    def _env(self, *, protocols: str, token: str = "") -> dict[str, str]:
        """A clean environment for git: no system/user config, no prompts, bounded transports."""
        home = self.state_dir / HOME_DIR
        home.mkdir(parents=True, exist_ok=True)
        env = {name: os.environ[name] for name in _PASS_THROUGH if os.environ.get(name)}
        env.update(
            {
                "PATH": os.environ.get("PATH") or os.defpath,
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "LANG": "C",
                "LC_ALL": "C",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ALLOW_PROTOCOL": protocols,
            }
        )
        config = [
            ("credential.helper", ""),  # no stored credentials, no helper prompting
            ("http.followRedirects", "false"),  # the token must not follow a redirect elsewhere
            ("http.lowSpeedLimit", "1000"),  # a stalled transfer fails in a minute, not at the timeout
            ("http.lowSpeedTime", "60"),
            ("gc.autoDetach", "false"),  # housekeeping stays inside the cache's lock
            ("core.hooksPath", os.devnull),
        ]
        if token:
            config.append(("http.extraHeader", f"Authorization: Bearer {token}"))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    async def _run(self, git: str, args: list[str], env: Mapping[str, str]) -> _Result:
        """Run git with a timeout; the whole process group is killed on timeout or cancellation."""
        process = await asyncio.create_subprocess_exec(
            git,
            *args,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                _, stderr = await process.communicate()
        except TimeoutError:
            _kill(process)
            await process.wait()
            return _Result(-1, f"fatal: timed out after {self.timeout_s:g}s")
        except BaseException:
            _kill(process)
            with contextlib.suppress(Exception):
                await process.wait()
            raise
        return _Result(
            process.returncode if process.returncode is not None else -1, stderr.decode("utf-8", "replace")
        )

    async def _run_out(self, git: str, args: list[str]) -> str:
        """Run a local, quick git command and return its stdout ('' on failure or timeout)."""
        process = await asyncio.create_subprocess_exec(
            git,
            *args,
            env=self._env(protocols="file"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                stdout, _ = await process.communicate()
        except TimeoutError:
            _kill(process)
            await process.wait()
            return ""
        except BaseException:
            _kill(process)
            with contextlib.suppress(Exception):
                await process.wait()
            raise
        return stdout.decode("utf-8", "replace") if process.returncode == 0 else ""

    async def _run_checked(self, git: str, args: list[str], *, env: Mapping[str, str], what: str) -> None:
        result = await self._run(git, args, env)
        if result.code != 0:
            raise GitFetchError(f"{what}: {_reason(result.stderr, '')}")


def _fetch_and_index(
    git: str,
    env: Mapping[str, str],
    cache: Path,
    url: str,
    sha: str,
    haves: list[str],
    token: str,
    timeout_s: float,
) -> str:
    """Stream the one-request fetch straight into `git index-pack`; its output (the pack's name).

    Blocking (run it in a thread). index-pack starts first, so its start-up overlaps the request,
    and the pack never touches a temporary file. Any failure raises FastFetchUnavailable (the
    caller falls back to `git fetch`), and the partial pack is removed.
    """
    process = subprocess.Popen(
        [git, "--git-dir", str(cache), "index-pack", "--stdin", "--fix-thin"],
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert process.stdin is not None
        fetch_pack(url, sha, haves, token, process.stdin, timeout_s)
        stdout, _ = process.communicate(timeout=timeout_s)
    except BaseException as exc:
        _stop_politely(process)
        _remove_partial_packs(cache)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise FastFetchUnavailable("indexing the pack took too long") from None
        raise
    if process.returncode != 0:
        _remove_partial_packs(cache)
        raise FastFetchUnavailable("git index-pack refused the pack the server sent")
    return stdout.decode("utf-8", "replace")


def _remove_partial_packs(cache: Path) -> None:
    """A failed index-pack leaves its partial pack behind; nothing else writes here (cache lock)."""
    for partial in (cache / "objects" / "pack").glob("tmp_*"):
        partial.unlink(missing_ok=True)


def _stop_politely(process: subprocess.Popen[bytes]) -> None:
    """End a git process so that it removes its temporary files (SIGTERM), SIGKILL if it hangs."""
    with contextlib.suppress(OSError, ValueError):
        if process.stdin is not None:
            process.stdin.close()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _clear_stale_locks(cache: Path) -> None:
    """Remove lock files a killed git left in the cache (a timeout, a cancel, an agent crash).

    Called under the cache's lock: no git process of ours works on the cache then, and nobody
    else does (one agent per state dir), so every `*.lock` there is stale and would make the next
    fetch fail with "Unable to create '....lock': File exists".
    """
    for lock in cache.rglob("*.lock"):
        with contextlib.suppress(OSError):
            if lock.is_file():
                lock.unlink()


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _hopeless(stderr: str) -> bool:
    """True for failures where asking for the pin ref instead cannot help (network, auth, timeout)."""
    text = stderr.lower()
    return any(
        marker in text
        for marker in (
            "could not read username",
            "authentication failed",
            "the requested url returned error: 401",
            "the requested url returned error: 403",
            "could not resolve host",
            "failed to connect",
            "connection refused",
            "connection timed out",
            "timed out after",
            "operation too slow",
            "not valid: is this a git repository",
            "repository not found",
            "the requested url returned error: 404",
        )
    )


def _reason(stderr: str, token: str) -> str:
    """Git's complaint as one short line, with the token (should git ever echo it) removed."""
    text = stderr.replace(token, "***") if token else stderr
    lower = text.lower()
    if "could not read username" in lower or "error: 401" in lower or "authentication failed" in lower:
        return "the server refused the agent's token (HTTP 401)"
    if "error: 403" in lower:
        return "the server refused access (HTTP 403)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if line.lower().startswith(("fatal:", "error:"))]
    line = (fatal or lines or ["git failed without a message"])[-1]
    for prefix in ("fatal: ", "error: "):
        if line.lower().startswith(prefix):
            line = line[len(prefix) :]
    line = re.sub(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", lambda m: redact_url(m.group(0)), line, flags=re.I)
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."
