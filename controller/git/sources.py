"""Where a repository lives: a local path or a remote URL, read from what a user typed.

Two readings. `locate()` classifies the text alone (no filesystem, no network): registering a
repository makes the controller read a path or fetch a URL, a probe of its own disk and network,
so who may ask for what is decided from `locate()`'s answer *before* anything is touched
(controller.repos.commands) and a refused request learns nothing, not even whether a path exists.
`parse_source()` then checks what is allowed, looking at the disk for a local path.

No dulwich here (controller.git.mirror fetches); error messages never carry credentials (`redact`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

ACCEPTED_FORMS = (
    "a local repository directory (working copy or bare), file:///path, http(s)://host/path, "
    "git://host/path, ssh://[user@]host/path or user@host:path"
)
#: Remote URL schemes a repository may use (`git+ssh` is ssh).
REMOTE_SCHEMES = frozenset({"http", "https", "git", "ssh", "git+ssh"})
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: scp-like syntax: user@host:path (git's own rule: no slash before the colon).
SCP_LIKE = re.compile(r"^[A-Za-z0-9._~+-]+@([A-Za-z0-9._-]+):.+$")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class GitError(Exception):
    """Clear, one-line message: what failed, for which repository, and how to fix it.

    Never contains credentials: any user:password@ in a URL is shown as ***@.
    """


def redact(url: str) -> str:
    """Hide credentials (`user:password@`, `token@`) in every URL of `url`, for messages and logs.

    Works on any text, so a whole error message can be passed through it. scp-like `git@host:path`
    has no scheme and names an SSH login, not a secret: it is left alone.
    """
    return _USERINFO.sub("***@", url)


@dataclass(frozen=True)
class RepoSource:
    """Where a pipeline's repository lives.

    `kind` is "local" (then `url` is an absolute filesystem path) or "remote" (then `url` is the
    URL as given, stripped; it may hold credentials, so print it through `redact`).
    """

    kind: str
    url: str


@dataclass(frozen=True)
class Location:
    """What a repository text names.

    `kind`: "local" (a path, or a file:// URL), "remote" (a URL or scp-like address with a
    host), or "unknown" (neither: `parse_source` refuses it, without I/O, saying why). `scheme`
    is lower case with `git+ssh` and scp-like addresses as "ssh" ("" for a path); `host` is the
    lower-case host name or address without brackets or port ("" when local).
    """

    kind: Literal["local", "remote", "unknown"]
    scheme: str
    host: str


def locate(text: str) -> Location:
    """Classify `text` as `parse_source` will, from the text alone."""
    stripped = text.strip()
    scheme_match = SCHEME.match(stripped)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme == "file":
            return Location("local", "file", "")
        if scheme not in REMOTE_SCHEMES:
            return Location("unknown", scheme, "")
        try:
            host = urlsplit(stripped).hostname or ""
        except ValueError:  # e.g. a malformed IPv6 literal: parse_source says what is wrong
            return Location("unknown", scheme, "")
        if not host:
            return Location("unknown", scheme, "")
        return Location("remote", "ssh" if scheme == "git+ssh" else scheme, host.lower())
    scp = SCP_LIKE.match(stripped)
    if scp:
        return Location("remote", "ssh", scp.group(1).lower())
    return Location("local", "", "")


def is_internal_host(host: str) -> bool:
    """A name or address that means the controller's own machine or network, by its text alone.

    Loopback, private, link-local (cloud metadata services), unspecified, reserved and multicast
    addresses, and `localhost` names. Names are not resolved: DNS can say anything, so the host
    allow-list (BUILDIT_REPO_HOSTS) is the real fence; this only stops the obvious probes.
    """
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:  # the forms the resolver also takes for IPv4: 127.1, 0x7f.0.0.1, 2130706433
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def host_patterns(text: str) -> tuple[str, ...]:
    """The host allow-list of BUILDIT_REPO_HOSTS: comma-separated host names or addresses, each
    optionally `*.` + a domain (its subdomains, not the domain itself); ValueError naming a bad one."""
    patterns: list[str] = []
    for raw in text.split(","):
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        wildcard = entry.startswith("*.")
        name = entry[2:] if wildcard else entry
        if _is_address(name.strip("[]")):
            valid, entry = not wildcard, name.strip("[]")
        else:
            valid = bool(_HOST_NAME.match(name)) and len(name) <= 253
        if not valid:
            raise ValueError(
                f"BUILDIT_REPO_HOSTS: {raw.strip()!r} is not a host name, an IP address or *.domain "
                "(no scheme, port or path); e.g. github.com,*.git.example.com"
            )
        patterns.append(entry)
    return tuple(patterns)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether `host` (as `locate` gives it) is one of `patterns` (see `host_patterns`)."""
    name = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                return True
        elif name == pattern:
            return True
    return False


def is_git_dir(path: Path) -> bool:
    """Git's own test (setup.c is_git_directory): HEAD, plus objects/ and refs/ or a commondir."""
    if not (path / "HEAD").is_file():
        return False
    if (path / "commondir").is_file():  # a linked worktree's private git dir
        return True
    return (path / "objects").is_dir() and ((path / "refs").is_dir() or (path / "reftable").is_dir())


def git_dir(repo_path: Path) -> Path:
    """The git dir of a working copy (a .git directory or a `gitdir:` file) or of a bare repository.

    The watcher and `parse_source` need to know where refs live without asking Git; raises
    GitError when `repo_path` is not the root of a repository.
    """
    root = repo_path.expanduser().absolute()
    dot_git = root / ".git"
    if dot_git.is_dir() and is_git_dir(dot_git):
        return dot_git.resolve()
    if dot_git.is_file():
        try:
            text = dot_git.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise GitError(f"cannot read {dot_git}: {exc.__class__.__name__}; check its permissions") from exc
        if text.startswith("gitdir:"):
            target = Path(text[len("gitdir:") :].strip())
            target = target if target.is_absolute() else root / target
            if is_git_dir(target):
                return target.resolve()
        raise GitError(
            f"{dot_git} does not point at a Git directory (broken worktree?); run `git worktree repair`"
        )
    if root.is_dir() and is_git_dir(root):
        return root.resolve()
    raise GitError(
        f"{root} is not a Git repository (no .git, and not a bare repository); "
        "give the root directory of a working copy or a bare repository, or run `git init` there"
    )


def common_dir(gitdir: Path) -> Path:
    """The directory holding refs and objects: `gitdir` itself, or the main git dir of a worktree."""
    pointer = gitdir / "commondir"
    if pointer.is_file():
        target = Path(pointer.read_text("utf-8").strip())
        return (target if target.is_absolute() else gitdir / target).resolve()
    return gitdir


def _local_source(path: Path) -> RepoSource:
    if not path.exists():
        raise GitError(
            f"repository path {path} does not exist; give the path of a Git working copy or bare repository"
        )
    if not path.is_dir():
        raise GitError(f"repository path {path} is not a directory; give the repository's root directory")
    git_dir(path)  # raises GitError naming the path when it is not a repository
    return RepoSource("local", str(path.resolve()))


def parse_source(url_or_path: str, base: Path | None = None) -> RepoSource:
    """Classify what a user typed as a pipeline's repository, failing early with a fixable message.

    Local: an existing repository directory (working copy or bare) or a file:// URL to one; a
    relative path resolves against `base` (default: the current directory). Remote: http://,
    https://, git://, ssh:// (or git+ssh://) URLs and scp-like user@host:path. No network access.
    """
    text = url_or_path.strip()
    if not text:
        raise GitError(f"no repository given; expected {ACCEPTED_FORMS}")
    scheme_match = SCHEME.match(text)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # e.g. an unclosed [IPv6 literal
            raise GitError(
                f"repository URL {redact(text)} is malformed ({exc}); expected {ACCEPTED_FORMS}"
            ) from None
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise GitError(f"file URL {redact(text)} names a remote host; use file:///absolute/path")
            return _local_source(Path(unquote(parts.path)))
        if scheme in REMOTE_SCHEMES:
            if not parts.hostname:
                raise GitError(f"repository URL {redact(text)} has no host; expected {ACCEPTED_FORMS}")
            return RepoSource("remote", text)
        raise GitError(
            f"unsupported repository URL scheme {scheme}:// in {redact(text)}; expected {ACCEPTED_FORMS}"
        )
    if SCP_LIKE.match(text):
        return RepoSource("remote", text)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base if base is not None else Path.cwd()) / path
    return _local_source(path)
