"""What a push webhook says: which repository, which branch, which new head commit.

GitHub, Gitea and GitLab each describe a push differently:

- GitHub (`X-GitHub-Event: push`) and Gitea (`X-Gitea-Event: push`): top-level `ref`, `before`,
  `after` and a `repository` object with `clone_url`, `ssh_url`, `html_url` (GitHub adds
  `git_url`, `svn_url`). A deleted branch has `after` all zeros. GitHub also sends `ping` when a
  hook is created. Both forges can deliver `application/x-www-form-urlencoded` bodies
  (`payload=<json>`), accepted here as well.
- GitLab (`X-Gitlab-Event: Push Hook`): `object_kind: "push"`, `ref`, `before`, `after`,
  `checkout_sha` (null when the branch was deleted), and the repository twice: `project`
  (`git_http_url`, `git_ssh_url`, `web_url`, `http_url`, `ssh_url`, `url`, `homepage`) and the
  older `repository` block. Tags come as a separate `Tag Push Hook`; instance-wide system hooks
  send `X-Gitlab-Event: System Hook` with the same push body.

BuildIt builds branches, so a tag push is "not a push to act on" (None), like a ping.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from controller.json_depth import JsonTooDeep, check_json_depth

FORGES = ("github", "gitea", "gitlab")

_EVENT_HEADERS = {"github": "X-GitHub-Event", "gitea": "X-Gitea-Event", "gitlab": "X-Gitlab-Event"}
# Repository URL fields, most useful first. Left out on purpose: Gitea's `original_url` (the
# upstream a mirror copies, another repository) and the REST API `url` of GitHub/Gitea events.
_URL_FIELDS = {
    "github": ("clone_url", "ssh_url", "git_url", "html_url", "svn_url"),
    "gitea": ("clone_url", "ssh_url", "html_url"),
    "gitlab": ("git_http_url", "git_ssh_url", "http_url", "ssh_url", "web_url", "url", "homepage"),
}
_HEX = re.compile(r"[0-9a-fA-F]{7,64}")
_BRANCH_PREFIX = "refs/heads/"
_TAG_PREFIX = "refs/tags/"


@dataclass(frozen=True)
class PushEvent:
    """A push to a repository, forge-neutral.

    `clone_urls`: every URL form the payload gives for the repository, for matching it against
    the registered ones with `same_repository`. `branch`: the branch name for a `refs/heads/*`
    push, None for any other ref (notes, merge-request refs...). `after`: the new head sha, None
    when the branch was deleted.
    """

    clone_urls: tuple[str, ...]
    branch: str | None
    after: str | None


class PayloadError(ValueError):
    """The delivery claims to be a push but cannot be read; the message says what is wrong."""


def parse_push(forge: str, event_header: str | None, body: bytes) -> PushEvent | None:
    """Read a push webhook so the caller can find the repository and trigger a build of `after`.

    `forge` is "github", "gitea" or "gitlab"; `event_header` the value of X-GitHub-Event,
    X-Gitea-Event or X-Gitlab-Event. Returns None for deliveries that are not a branch push
    (ping, issues, tag pushes...) so the caller can answer 200 "ignored". Raises PayloadError
    for a missing event header, a body that is not a JSON object, or a push without the fields
    needed (ref, after, repository URLs); ValueError for an unknown `forge`.
    """
    if forge not in FORGES:
        raise ValueError(f"unknown forge {forge!r}; expected one of {', '.join(FORGES)}")
    event = (event_header or "").strip().lower()
    if not event:
        raise PayloadError(f"missing {_EVENT_HEADERS[forge]} header")
    if forge in ("github", "gitea") and event != "push":
        return None
    if forge == "gitlab" and event not in ("push hook", "system hook"):
        return None  # "Tag Push Hook", "Merge Request Hook", ...
    data = _load(body)
    if forge == "gitlab" and data.get("object_kind", data.get("event_name")) != "push":
        if event == "system hook":
            return None  # a system hook about something else (tag_push, repository_update...)
        kind = data.get("object_kind")
        raise PayloadError(f"GitLab Push Hook payload has object_kind {kind!r}, not 'push'")

    ref = data.get("ref")
    if not isinstance(ref, str) or not ref:
        raise PayloadError("push payload has no 'ref'")
    if ref.startswith(_TAG_PREFIX):
        return None
    branch = ref[len(_BRANCH_PREFIX) :] if ref.startswith(_BRANCH_PREFIX) else None
    if branch == "":
        raise PayloadError(f"push payload has an empty branch name in ref {ref!r}")
    return PushEvent(clone_urls=_clone_urls(forge, data), branch=branch, after=_after(data))


def parse_generic(body: bytes) -> tuple[str, str] | None:
    """The optional body of `POST /hooks/git/{id}`: (branch, new head) to fetch at once, or None.

    Empty: "something changed", the whole repository is fetched. Otherwise the JSON object a
    `post-receive` hook can send for the ref it received, `{"ref": "refs/heads/<branch>", "after":
    "<sha>"}`: that commit is fetched in one request. A tag, a deletion (`after` all zeros) or
    another ref also just fetches everything. Anything else is a PayloadError.
    """
    if not body.strip():
        return None
    data = _load(body)
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref:
        raise PayloadError('body must be empty or JSON {"ref": "refs/heads/<branch>", "after": "<sha>"}')
    after = _after(data)
    if not ref.startswith(_BRANCH_PREFIX) or len(ref) == len(_BRANCH_PREFIX) or after is None:
        return None
    return ref[len(_BRANCH_PREFIX) :], after


def _load(body: bytes) -> dict[str, Any]:
    """The JSON object of a delivery, sent as `application/json` or as form field `payload`."""
    if body[:8] == b"payload=":
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError(f"form body is not a valid 'payload=' field: {exc}") from None
        text: str | bytes = fields.get("payload", [""])[0]
    else:
        text = body
    try:
        check_json_depth(text)
        data = json.loads(text)
    except JsonTooDeep as exc:
        raise PayloadError(f"body is refused: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body is JSON but not an object (got {type(data).__name__})")
    return data


def _clone_urls(forge: str, data: dict[str, Any]) -> tuple[str, ...]:
    blocks = ("project", "repository") if forge == "gitlab" else ("repository",)
    found = [data[name] for name in blocks if isinstance(data.get(name), dict)]
    if not found:
        wanted = "'project' or 'repository'" if forge == "gitlab" else "'repository'"
        raise PayloadError(f"push payload has no {wanted}")
    urls: list[str] = []
    for block in found:
        for key in _URL_FIELDS[forge]:
            value = block.get(key)
            if isinstance(value, str) and value.strip() and value.strip() not in urls:
                urls.append(value.strip())
    if not urls:
        raise PayloadError(f"push payload's repository has no URL (none of {', '.join(_URL_FIELDS[forge])})")
    return tuple(urls)


def _after(data: dict[str, Any]) -> str | None:
    after = data.get("after")
    if not isinstance(after, str) or not after:
        raise PayloadError("push payload has no 'after'")
    if not _HEX.fullmatch(after):
        raise PayloadError(f"push payload's 'after' {after[:80]!r} is not a commit sha")
    if set(after) == {"0"}:
        return None  # the ref was deleted
    return after.lower()


# --- Repository URL matching --------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418}
_FAMILY = {"http": "http", "https": "http", "ssh": "ssh", "git+ssh": "ssh", "ssh+git": "ssh", "git": "git"}
# scp-like syntax as git reads it: [user@]host:path, with a ':' before any '/'.
_SCP = re.compile(r"(?:[^@/]+@)?(?P<host>[^/:@]+):(?P<path>.*)")


@dataclass(frozen=True)
class _Remote:
    family: str  # "http" (http/https), "ssh" (ssh URLs and scp-like), "git", or another scheme
    host: str
    port: int | None
    path: str


def _clean_path(path: str) -> str:
    path = re.sub(r"/{2,}", "/", path).strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")].rstrip("/")
    return path


def _local(path: str) -> Path:
    candidate = Path(path).expanduser()
    try:
        return candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable parent
        return Path(os.path.abspath(candidate))


def _locate(url: str) -> _Remote | Path | None:
    """Where a repository URL points: a remote (host + path) or a local directory."""
    text = url.strip()
    if not text:
        return None
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return _local(parts.path) if parts.path else None
        try:
            host, port = parts.hostname, parts.port
        except ValueError:  # a port that is not a number
            return None
        if not host:
            return None
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
        return _Remote(_FAMILY.get(scheme, scheme), host.lower(), port, _clean_path(parts.path))
    match = _SCP.fullmatch(text)
    if match and len(match["host"]) > 1:  # a single letter is a Windows drive (C:\repo)
        return _Remote("ssh", match["host"].lower(), None, _clean_path(match["path"]))
    return _local(text)


def same_repository(registered_url: str, candidate: str) -> bool:
    """Does a URL from a webhook payload name the registered repository?

    Forges give one repository many spellings (https clone URL, web URL, scp-like SSH), and users
    register any of them, so compare what identifies the repository: the host (any letter case)
    and the path, ignoring the scheme (http/https/ssh/scp-like), user@ credentials, a trailing
    ".git" or "/", and default ports. A port only counts between URLs of the same transport
    (https://h:8443 vs https://h is another server; an SSH port says nothing about the HTTPS
    one). Local paths and file:// URLs compare by resolved path. The path keeps its letter
    case. Unparseable or empty input never matches.
    """
    left, right = _locate(registered_url), _locate(candidate)
    if left is None or right is None:
        return False
    if isinstance(left, Path) or isinstance(right, Path):
        return isinstance(left, Path) and isinstance(right, Path) and left == right
    if left.host != right.host or left.path != right.path or not left.path:
        return False
    return left.family != right.family or left.port == right.port
