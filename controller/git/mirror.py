"""The controller's bare mirrors of pipeline repositories, and the transport that fills them.

A pipeline names its repository by a local path or a remote URL (`parse_source`, in
controller.git.sources, re-exported here). The controller
keeps one bare mirror per repository (`Mirror`): it fetches every branch into it, reads
`.buildit.kdl` and commit metadata straight from its object store (no checkout), and pins the
commits it runs (`refs/buildit/pins/<sha>`) so agents can always fetch them from the mirror over
smart HTTP (`controller.git.smart_http`), even after a force-push moved the branch away.

Everything here is synchronous and blocking: callers run it in a thread, one call at a time per
repository. Error messages never carry credentials (`redact`).

Why one module past 500 lines: a mirror is one object over one dulwich repository (fetch, read,
pin, serve, maintain share its open handle and its locking rule), and this is dulwich's owner.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

# Where repositories live (split out: no dulwich there); re-exported, as callers import them here.
from controller.git.sources import ACCEPTED_FORMS as ACCEPTED_FORMS
from controller.git.sources import GitError as GitError
from controller.git.sources import RepoSource as RepoSource
from controller.git.sources import common_dir as common_dir
from controller.git.sources import git_dir as git_dir
from controller.git.sources import is_git_dir as is_git_dir
from controller.git.sources import parse_source as parse_source
from controller.git.sources import redact as redact

if TYPE_CHECKING:
    from dulwich.client import GitClient
    from dulwich.objects import Commit, ObjectID
    from dulwich.refs import Ref
    from dulwich.repo import Repo

# dulwich is imported inside the functions, like controller.git.local: importing this module for
# `GitError` or `parse_source` costs nothing.

_HEX_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEADS = b"refs/heads/"
PIN_PREFIX = "refs/buildit/pins/"
#: Mirror upkeep thresholds (see Mirror.maintain).
MAX_PACKS = 8
MAX_LOOSE_PINS = 32
# Per-socket-operation timeout (connect, each read) for HTTP(S) sources: a stuck server fails the
# fetch instead of hanging the repository's worker forever.
HTTP_TIMEOUT_SECONDS = 60.0
# SSH never prompts (no terminal on the controller) and gives up on dead hosts.
DEFAULT_SSH_COMMAND = "ssh -o BatchMode=yes -o ConnectTimeout=15"
_MAX_SYMLINK_HOPS = 8


@dataclass(frozen=True)
class CommitMeta:
    """What the run views show about a commit. `author` is "Name <email>", `committed_at` is UTC."""

    sha: str
    message: str
    author: str
    committed_at: datetime


# --- Transport -------------------------------------------------------------------------------------


def _client(source: RepoSource) -> tuple[GitClient, str]:
    """A dulwich client for `source` and the path to pass it."""
    from dulwich.client import LocalGitClient, get_transport_and_path

    if source.kind == "local":
        return LocalGitClient(), source.url
    scheme = source.url.split("://", 1)[0].lower() if "://" in source.url else "ssh"
    if scheme in ("http", "https"):
        # Credentials in the URL are taken out by dulwich and sent as Basic auth to that origin only.
        return get_transport_and_path(source.url, pool_manager=_http_pool(source.url))
    if scheme in ("ssh", "git+ssh"):
        ssh = os.environ.get("GIT_SSH_COMMAND") or DEFAULT_SSH_COMMAND
        return get_transport_and_path(source.url, ssh_command=ssh)
    return get_transport_and_path(source.url)


def _http_pool(url: str) -> Any:
    """The HTTP connection pool of one fetch: dulwich's (proxies, timeouts), following no redirect.

    Why no redirect: who may register which host is checked on the URL as given (see
    controller.repos.commands); a redirect would make the controller fetch a URL nobody checked,
    such as an address inside its own network. A moved repository is registered by its new URL.
    """
    import urllib3
    from dulwich.client import default_urllib3_manager

    class Pool(urllib3.PoolManager):
        def urlopen(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
            return super().urlopen(method, url, *args, **{**kw, "redirect": False})

    class Proxy(urllib3.ProxyManager):
        def urlopen(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
            return super().urlopen(method, url, *args, **{**kw, "redirect": False})

    return default_urllib3_manager(None, Pool, Proxy, base_url=url, timeout=HTTP_TIMEOUT_SECONDS)


#: What every smart-HTTP Git server (git, dulwich, forges) offers for protocol v0 fetches; assumed
#: when the advertisement is skipped (see Mirror.fetch_commit).
_ASSUMED_UPLOAD_CAPABILITIES = frozenset(
    {b"multi_ack_detailed", b"side-band-64k", b"ofs-delta", b"thin-pack", b"no-progress"}
)


def _known_head_client(source: RepoSource, ref: Ref, sha: ObjectID) -> tuple[GitClient, str]:
    """An HTTP client that skips the ref advertisement: the caller already knows `ref` -> `sha`."""
    from urllib.parse import urlparse

    from dulwich.client import Urllib3HttpGitClient

    class KnownHeadClient(Urllib3HttpGitClient):
        def _discover_references(
            self,
            service: bytes,
            base_url: str,
            protocol_version: int | None = None,
            ref_prefix: Sequence[bytes] | None = None,
        ) -> tuple[dict[Ref, ObjectID | None], set[bytes], str, dict[Ref, Ref], dict[Ref, ObjectID]]:
            self.protocol_version = 0
            return {ref: sha}, set(_ASSUMED_UPLOAD_CAPABILITIES), base_url, {}, {}

    parsed = urlparse(source.url)
    client = KnownHeadClient.from_parsedurl(parsed, pool_manager=_http_pool(source.url))
    return client, parsed.path


@contextlib.contextmanager
def _fetching(client: GitClient, source: RepoSource) -> Iterator[None]:
    """A fetch's failures as one GitError (credentials removed); the client closed either way."""
    try:
        yield
    except GitError:
        raise
    except Exception as exc:
        raise _transport_error(exc, source, "fetching") from exc
    finally:
        client.close()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib3 MaxRetryError keeps the cause here
        if isinstance(reason, BaseException) and id(reason) not in seen:
            current = reason
        else:
            current = current.__cause__ or current.__context__


def _secret_free(text: str, source: RepoSource) -> str:
    text = redact(text)
    if "://" in source.url:
        password = urlsplit(source.url).password
        if password:
            text = text.replace(password, "***").replace(unquote(password), "***")
    return " ".join(text.split())


def _transport_error(exc: BaseException, source: RepoSource, action: str) -> GitError:
    """Turn whatever dulwich, urllib3 or the OS raised into one actionable, credential-free line."""
    from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized
    from dulwich.errors import NotGitRepository

    where = f"{action} {redact(source.url)} failed"
    if isinstance(exc, HTTPUnauthorized):
        return GitError(
            f"{where}: the server wants credentials (HTTP 401) or refused the ones given; put a user and "
            "token in the URL (https://USER:TOKEN@host/path) or allow anonymous read access"
        )
    if isinstance(exc, HTTPProxyUnauthorized):
        return GitError(f"{where}: the HTTP proxy wants credentials (HTTP 407); fix https_proxy/http_proxy")
    if isinstance(exc, NotGitRepository):
        if source.kind == "local":
            return GitError(f"{where}: {source.url} is not a Git repository (any more); check the path")
        return GitError(
            f"{where}: no Git repository at that URL (HTTP 404 or not a repository); check the URL"
        )
    if source.kind == "local":
        problem = next((link for link in _chain(exc) if isinstance(link, OSError)), None)
        if problem is not None:
            return GitError(f"{where}: {problem.strerror or problem}; check that the controller may read it")
        return GitError(f"{where}: {exc or exc.__class__.__name__}; check the repository with `git fsck`")
    missing = next((link for link in _chain(exc) if isinstance(link, FileNotFoundError)), None)
    if missing is not None:
        return GitError(
            f"{where}: the command {missing.filename!r} is not installed; install it (openssh-client)"
        )
    import urllib3.exceptions  # a dulwich dependency

    connect_types = (OSError, urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
    connect_problem: BaseException | None = None
    for link in _chain(exc):
        if isinstance(link, connect_types):
            connect_problem = link
    if connect_problem is not None:
        if isinstance(connect_problem, OSError) and connect_problem.strerror:
            reason = connect_problem.strerror
        else:
            reason = str(connect_problem).rsplit(": ", 1)[-1] or connect_problem.__class__.__name__
        return GitError(
            f"{where}: cannot connect ({_secret_free(reason, source)}); check the host name and port, "
            "and that the server is up and reachable from the controller"
        )
    detail = _secret_free(str(exc) or exc.__class__.__name__, source)
    if "Permission denied (" in detail or "Host key verification failed" in detail:
        return GitError(
            f"{where}: SSH authentication failed ({detail}); give the controller's user a key the server "
            "accepts and a known_hosts entry for the host (it never prompts)"
        )
    if detail.startswith("ssh: ") and any(
        phrase in detail
        for phrase in ("Connection refused", "Could not resolve", "timed out", "No route to host")
    ):
        return GitError(
            f"{where}: cannot connect ({detail}); check the host name and port, "
            "and that the server is up and reachable from the controller"
        )
    if re.search(r"http resp 30[12378]\b", detail):
        return GitError(
            f"{where}: the server answered with a redirect; the controller follows none (so it fetches "
            "only the URL that was checked at registration): register the URL it redirects to"
        )
    if "http resp 403" in detail:
        return GitError(
            f"{where}: the server refused access (HTTP 403); check that the credentials in the URL may read "
            "this repository"
        )
    return GitError(
        f"{where}: {detail}; check the URL and that it is a Git repository the controller can read"
    )


def _resolves(repo: Repo, ref: Ref) -> bool:
    try:
        repo.refs[ref]
    except KeyError:
        return False
    return True


def _branch_heads(refs: Mapping[Ref, ObjectID | None]) -> dict[str, str]:
    heads: dict[str, str] = {}
    for ref, sha in refs.items():
        if sha is None or not ref.startswith(_HEADS) or ref.endswith(b"^{}"):
            continue
        heads[ref[len(_HEADS) :].decode("utf-8", "surrogateescape")] = sha.decode("ascii")
    return heads


def remote_branches(source: RepoSource) -> dict[str, str]:
    """Branch heads of `source` without fetching objects (ls-remote), for cheap change polling."""
    client, path = _client(source)
    try:
        result = client.get_refs(path.encode() if isinstance(path, str) else path, ref_prefix=[_HEADS])
    except Exception as exc:
        raise _transport_error(exc, source, "listing branches of") from exc
    finally:
        client.close()
    return _branch_heads(result.refs)


# --- The mirror ------------------------------------------------------------------------------------


class Mirror:
    """The controller's bare mirror of one repository at `path` (e.g. <data dir>/mirrors/<id>.git)."""

    def __init__(self, path: Path, source: RepoSource) -> None:
        """Remember where the mirror lives; nothing touches the disk until `ensure` or `fetch`."""
        self.path = path
        self.source = source
        self._repo: Repo | None = None

    # Opening ---------------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the bare repository if missing (idempotent), so fetches have somewhere to land."""
        from dulwich.repo import Repo

        if self._repo is not None:
            return
        if self.path.is_dir() and is_git_dir(self.path):
            self._repo = Repo(str(self.path))
            return
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise GitError(
                f"mirror path {self.path} exists but is not a bare Git repository; move it away so the "
                "controller can recreate the mirror"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._repo = Repo.init_bare(str(self.path))
        except OSError as exc:
            raise GitError(
                f"cannot create the mirror at {self.path}: {exc.strerror or exc}; check permissions"
            ) from exc

    def _open(self) -> Repo:
        if self._repo is None:
            if not (self.path.is_dir() and is_git_dir(self.path)):
                raise GitError(
                    f"no mirror at {self.path} for {redact(self.source.url)}; fetch the repository first"
                )
            self.ensure()
        assert self._repo is not None
        return self._repo

    def repository(self) -> Repo:
        """The open repository, kept between calls; callers hold the mirror's lock while using it."""
        return self._open()

    def close(self) -> None:
        """Release the open repository (pack file handles); the mirror can be reopened later."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    # Fetching --------------------------------------------------------------------------------------

    def fetch(self) -> dict[str, str]:
        """Bring every branch of the source into the mirror; returns {branch: sha}.

        Branches are force-updated and branches gone upstream are deleted, so the mirror's
        refs/heads/* equal the source's. Incremental: the mirror's heads are offered as haves and
        nothing is transferred when nothing changed. Pins are left untouched.
        """
        from dulwich.objects import ObjectID

        self.ensure()
        repo = self._open()

        def determine_wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            tips = {ObjectID(sha.encode("ascii")) for sha in _branch_heads(refs).values()}
            return sorted(oid for oid in tips if oid not in repo.object_store)

        client, path = _client(self.source)
        with _fetching(client, self.source):
            result = client.fetch(
                path, repo, determine_wants=determine_wants, ref_prefix=[b"HEAD", _HEADS], protocol_version=0
            )
        heads = _branch_heads(result.refs)
        for branch, sha in heads.items():
            if ObjectID(sha.encode("ascii")) not in repo.object_store:
                raise GitError(
                    f"fetching {redact(self.source.url)} failed: branch {branch} ({sha}) did not arrive; "
                    "retry, and check the source repository with `git fsck`"
                )
        self._update_heads(repo, heads, result.symrefs)
        return heads

    def fetch_commit(self, branch: str, sha: str) -> dict[str, str]:
        """Fetch one commit that a verified webhook named as the new head of `branch`, in one request.

        A push webhook already says which commit a branch now points at, so the ref advertisement
        (the first of a fetch's two HTTP requests) tells nothing new: this asks for `sha` right
        away, with the mirror's heads as haves, and sets refs/heads/<branch> to it. HTTP(S)
        sources only; anything else, or any failure, raises GitError and the caller falls back to
        `fetch()` (which also catches up on other branches and deletions). Returns the mirror's
        branch heads, as `fetch()` does.
        """
        from dulwich.objects import ObjectID
        from dulwich.refs import Ref

        if not _HEX_SHA.fullmatch(sha) or not branch or branch.startswith("/") or ".." in branch:
            raise GitError(f"cannot fetch {sha!r} as branch {branch!r}: not a commit id and branch name")
        if self.source.kind != "remote" or not self.source.url.lower().startswith(("http://", "https://")):
            raise GitError(f"{redact(self.source.url)}: a single-commit fetch needs an http(s) source")
        self.ensure()
        repo = self._open()
        ref = Ref(_HEADS + branch.encode("utf-8", "surrogateescape"))
        want = ObjectID(sha.encode("ascii"))
        if want not in repo.object_store:
            client, path = _known_head_client(self.source, ref, want)
            with _fetching(client, self.source):
                client.fetch(path, repo, determine_wants=lambda refs, depth=None: [want], protocol_version=0)
            if want not in repo.object_store:
                raise GitError(f"fetching {redact(self.source.url)}: commit {sha} did not arrive")
        if repo.refs.read_ref(ref) != want:
            repo.refs[ref] = want
        return self.branches()

    def _update_heads(self, repo: Repo, heads: dict[str, str], symrefs: Mapping[Ref, Ref]) -> None:
        from dulwich.objects import ObjectID
        from dulwich.refs import HEADREF, Ref

        current = repo.refs.as_dict(Ref(b"refs/heads"))
        for name in current:
            branch = name.decode("utf-8", "surrogateescape")
            if branch not in heads:
                del repo.refs[Ref(_HEADS + name)]
        for branch, sha in heads.items():
            ref = Ref(_HEADS + branch.encode("utf-8", "surrogateescape"))
            if current.get(Ref(branch.encode("utf-8", "surrogateescape"))) != sha.encode("ascii"):
                repo.refs[ref] = ObjectID(sha.encode("ascii"))
        # HEAD follows the source's default branch, so `git clone` of the mirror checks it out.
        target = symrefs.get(HEADREF)
        if (
            target is not None
            and target.startswith(_HEADS)
            and target[len(_HEADS) :].decode("utf-8", "surrogateescape") in heads
        ):
            if repo.refs.read_ref(HEADREF) != b"ref: " + target:
                repo.refs.set_symbolic_ref(HEADREF, target)
        elif heads and not _resolves(repo, HEADREF):
            fallback = "main" if "main" in heads else "master" if "master" in heads else sorted(heads)[0]
            repo.refs.set_symbolic_ref(HEADREF, Ref(_HEADS + fallback.encode("utf-8", "surrogateescape")))

    # Reading ---------------------------------------------------------------------------------------

    def branches(self) -> dict[str, str]:
        """The mirror's current branch heads, without any network access."""
        from dulwich.refs import Ref

        if self._repo is None and not (self.path.is_dir() and is_git_dir(self.path)):
            return {}
        refs = self._open().refs.as_dict(Ref(b"refs/heads"))
        return {
            name.decode("utf-8", "surrogateescape"): sha.decode("ascii") for name, sha in sorted(refs.items())
        }

    def has_commit(self, sha: str) -> bool:
        """Whether the mirror holds commit `sha` (full hex), e.g. before pinning or running it."""
        from dulwich.objects import Commit, ObjectID

        if not _HEX_SHA.match(sha) or (self._repo is None and not is_git_dir(self.path)):
            return False
        repo = self._open()
        oid = ObjectID(sha.encode("ascii"))
        if oid not in repo.object_store:
            return False
        return isinstance(repo.object_store[oid], Commit)

    def _commit(self, sha: str) -> tuple[Repo, Commit]:
        from dulwich.objects import Commit, ObjectID

        repo = self._open()
        if not _HEX_SHA.match(sha):
            raise GitError(f"{sha!r} is not a full commit SHA (40 lowercase hex digits)")
        oid = ObjectID(sha.encode("ascii"))
        if oid not in repo.object_store:
            raise GitError(
                f"commit {sha} is not in the mirror of {redact(self.source.url)}; fetch the repository first"
            )
        obj = repo.object_store[oid]
        if not isinstance(obj, Commit):
            raise GitError(
                f"{sha} in the mirror of {redact(self.source.url)} is a {obj.type_name.decode()}, "
                "not a commit"
            )
        return repo, obj

    def read_file(self, sha: str, path: str) -> bytes | None:
        """The content of `path` ('/'-separated, e.g. ".buildit.kdl") in commit `sha`, without checkout.

        None when the path is absent, a directory or a submodule, or leaves the tree. Symbolic links
        inside the tree are followed (a `.buildit.kdl` linking to `ci/pipeline.kdl` reads the target).
        GitError when the commit is not in the mirror.
        """
        from dulwich.objects import Blob, Tree

        repo, commit = self._commit(sha)
        root = repo.object_store[commit.tree]
        if not isinstance(root, Tree):
            raise GitError(f"commit {sha} has a broken tree in the mirror of {redact(self.source.url)}")
        parts = [p.encode("utf-8", "surrogateescape") for p in path.split("/")]
        trees: list[Tree] = [root]
        hops = 0
        while parts:
            name = parts.pop(0)
            if name in (b"", b"."):
                continue
            if name == b"..":
                if len(trees) == 1:
                    return None
                trees.pop()
                continue
            try:
                mode, oid = trees[-1][name]
            except KeyError:
                return None
            if stat.S_ISLNK(mode):
                hops += 1
                link = repo.object_store[oid]
                if hops > _MAX_SYMLINK_HOPS or not isinstance(link, Blob) or link.data.startswith(b"/"):
                    return None
                parts = link.data.split(b"/") + parts
                continue
            obj = repo.object_store[oid] if stat.S_ISDIR(mode) or stat.S_ISREG(mode) else None
            if parts:
                if not isinstance(obj, Tree):
                    return None
                trees.append(obj)
                continue
            return obj.data if isinstance(obj, Blob) else None
        return None

    def commit(self, sha: str) -> CommitMeta:
        """Message (stripped), author ("Name <email>") and commit time (UTC) of commit `sha`."""
        _, commit = self._commit(sha)
        encoding = (commit.encoding or b"utf-8").decode("ascii", "replace")
        try:
            message = commit.message.decode(encoding, "replace")
        except LookupError:  # an unknown encoding header
            message = commit.message.decode("utf-8", "replace")
        return CommitMeta(
            sha=sha,
            message=message.strip(),
            author=commit.author.decode("utf-8", "replace"),
            committed_at=datetime.fromtimestamp(commit.commit_time, tz=UTC),
        )

    def new_commits(self, old: str | None, new: str, limit: int = 50) -> list[str]:
        """Commits a push brought: reachable from `new` but not from `old`, newest first, at most `limit`.

        `old` None (a new branch) gives just [new]; so does a force push (`old` not an ancestor of
        `new`, or unknown), because "everything not in the old history" is then not what was pushed.
        """
        from dulwich.graph import can_fast_forward
        from dulwich.objects import ObjectID
        from dulwich.walk import ORDER_TOPO

        repo, _ = self._commit(new)
        if old is None:
            return [new]
        if old == new:
            return []
        new_id = ObjectID(new.encode("ascii"))
        if not self.has_commit(old):
            return [new]
        old_id = ObjectID(old.encode("ascii"))
        if not can_fast_forward(repo, old_id, new_id):
            return [new]
        walker = repo.get_walker(include=[new_id], exclude=[old_id], order=ORDER_TOPO)
        return [entry.commit.id.decode("ascii") for entry in islice(walker, max(limit, 0))]

    # Pinning ---------------------------------------------------------------------------------------

    def pin(self, sha: str) -> None:
        """Keep commit `sha` advertised and fetchable by agents, and safe from garbage collection.

        Creates refs/buildit/pins/<sha>. The smart-HTTP server only lets clients fetch advertised
        tips, so a run's commit stays fetchable after a force-push moved its branch.
        """
        from dulwich.objects import ObjectID
        from dulwich.refs import Ref

        repo, _ = self._commit(sha)
        repo.refs.add_if_new(Ref((PIN_PREFIX + sha).encode("ascii")), ObjectID(sha.encode("ascii")))

    def maintain(self, max_packs: int = MAX_PACKS, max_loose_pins: int = MAX_LOOSE_PINS) -> bool:
        """Keep serving fast: merge packs and pack the pin refs once they pile up.

        Every fetch adds a pack and every run a pin ref, and each smart-HTTP request opens the
        mirror anew, reading every pack index and every loose ref: without this, serving an agent
        gets slower with each commit. Merging is dulwich's repack (all objects in memory: fine for
        the repositories CI builds, heavy for giant ones). The caller must keep readers of the
        mirror out meanwhile (the old packs are deleted). Returns whether anything was done.
        """
        repo = self._open()
        done = False
        packs = list((self.path / "objects" / "pack").glob("*.pack"))
        if len(packs) > max_packs:
            repo.object_store.repack()
            done = True
        pin_dir = self.path / PIN_PREFIX
        loose = sum(1 for _ in pin_dir.iterdir()) if pin_dir.is_dir() else 0
        if loose > max_loose_pins:
            repo.refs.pack_refs(all=True)
            done = True
        if done:
            self.close()  # reopen with the new pack set next time
        return done

    def pins(self) -> list[str]:
        """The pinned commits, e.g. to drop pins of runs that were deleted."""
        from dulwich.refs import Ref

        refs = self._open().refs.as_dict(Ref(PIN_PREFIX.rstrip("/").encode("ascii")))
        return sorted(name.decode("ascii") for name in refs)
