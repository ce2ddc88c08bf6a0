"""Report a run's status to the forge's commit-status API, so the commit shows a check mark.

One POST per status change, with the standard library's urllib (synchronous: call it from a
worker thread, e.g. `asyncio.to_thread`):

- GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, JSON `state` (pending, success,
  failure, error), `target_url`, `description`, `context`; `Authorization: Bearer <token>`,
  `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`. 201 on success.
- Gitea/Forgejo: `POST {api}/repos/{owner}/{repo}/statuses/{sha}` (api = https://host/api/v1),
  the same JSON fields, states pending, success, error, failure, warning;
  `Authorization: token <token>`. 201 on success.
- GitLab: `POST {api}/projects/{id or url-encoded path}/statuses/{sha}` (api =
  https://host/api/v4), fields `state` (pending, running, success, failed, canceled, skipped),
  `target_url`, `description`, `name` (the context); `PRIVATE-TOKEN: <token>`. 201 on success.
  `skipped` is accepted by GitLab 17.6 and later.

The token is a credential: it appears in no log, repr or exception message. Redirects are not
followed (a POST silently turned into a GET, or the token sent to another host, would be worse
than an error).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.client import HTTPException
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit

KINDS = ("github", "gitea", "gitlab")
BUILDIT_STATUSES = (
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "skipped",
    "timed_out",
    "error",
)
MAX_DESCRIPTION = 140  # GitHub's limit; GitLab allows 255, Gitea more
_SNIPPET = 200
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_BAD_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f]")

BUILDIT_TO_FORGE: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        # GitHub has no "cancelled": "error" (the check did not complete) is what CI systems use.
        # A skipped run reports "success" so it does not hold a required check pending forever.
        "github": MappingProxyType(
            {
                "pending": "pending",
                "queued": "pending",
                "running": "pending",
                "succeeded": "success",
                "failed": "failure",
                "cancelled": "error",
                "skipped": "success",
                "timed_out": "failure",
                "error": "error",
            }
        ),
        "gitea": MappingProxyType(
            {
                "pending": "pending",
                "queued": "pending",
                "running": "pending",
                "succeeded": "success",
                "failed": "failure",
                "cancelled": "warning",
                "skipped": "success",
                "timed_out": "failure",
                "error": "error",
            }
        ),
        "gitlab": MappingProxyType(
            {
                "pending": "pending",
                "queued": "pending",
                "running": "running",
                "succeeded": "success",
                "failed": "failed",
                "cancelled": "canceled",
                "skipped": "skipped",
                "timed_out": "failed",
                "error": "failed",
            }
        ),
    }
)


@dataclass(frozen=True)
class StatusTarget:
    """Where a repository's commit statuses go. `repo` is "owner/name" (GitHub, Gitea) or a GitLab
    project id or "group/project" path. The token is left out of repr so logging a target is safe."""

    kind: str
    api_url: str
    repo: str
    token: str = field(repr=False)


class StatusReportError(Exception):
    """The forge did not take the status. The message names the forge, the HTTP status or the
    connection problem, the repository and the sha (never the token); `http_status` is the HTTP
    status code, or None when no response came back."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


def validate_target(kind: str, api_url: str, repo: str) -> None:
    """Refuse a status target that cannot work, at registration time rather than at the first run.

    Raises ValueError with a message saying what to fix: an unknown kind, an api_url that is not
    an http(s) URL with a host, an empty repo, or (GitHub, Gitea) a repo not of the form owner/name.
    """
    if kind not in KINDS:
        raise ValueError(f"status kind {kind!r} is not one of {', '.join(KINDS)}")
    parts = urlsplit(api_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        examples = {
            "github": "https://api.github.com",
            "gitea": "https://gitea.example/api/v1",
            "gitlab": "https://gitlab.example/api/v4",
        }
        raise ValueError(f"status api_url {api_url!r} must be an http(s) URL, e.g. {examples[kind]}")
    if parts.query or parts.fragment:
        raise ValueError(f"status api_url {api_url!r} must not have a query or fragment")
    if not repo.strip():
        what = "a project id or group/project path" if kind == "gitlab" else "owner/name"
        raise ValueError(f"status repo is empty; give {what}")
    if kind != "gitlab":
        owner, slash, name = repo.strip().partition("/")
        if not slash or not owner or not name or "/" in name:
            raise ValueError(f"status repo {repo!r} must be owner/name for {kind}")


def report_status(
    target: StatusTarget,
    sha: str,
    status: str,
    *,
    target_url: str = "",
    description: str = "",
    context: str = "buildit",
    timeout_s: float = 10.0,
) -> None:
    """Set the commit status of `sha` on the forge so the push/PR shows how the BuildIt run went.

    `status` is a BuildIt run status (see BUILDIT_TO_FORGE for what each forge receives);
    `context` names the check (GitLab: `name`), so a later call with the same context replaces
    the earlier state. Empty `target_url`/`description` are left out; the description is cut to
    140 characters. Raises StatusReportError when the forge answers anything but 2xx or cannot be
    reached within `timeout_s`; ValueError for an invalid target, sha, status or token.
    """
    validate_target(target.kind, target.api_url, target.repo)
    if not _SHA.fullmatch(sha):
        raise ValueError(f"sha {sha!r} is not a hex commit id")
    if status not in BUILDIT_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(BUILDIT_STATUSES)}")
    if not target.token or _BAD_HEADER_CHARS.search(target.token):
        # http.client would echo an invalid header value in its exception: check it here instead.
        raise ValueError(f"the {target.kind} status token is empty or contains control characters")

    url, payload, headers = _request_parts(target, sha, status, target_url, description, context)
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST")
    for name, value in headers.items():
        request.add_header(name, value)
    where = f"{target.kind} status for {target.repo}@{sha}"
    origin = _origin(target.api_url)
    try:
        # A fresh opener per call: it reads the proxy settings (http_proxy, no_proxy) as they are now.
        with urllib.request.build_opener(_NoRedirect()).open(request, timeout=timeout_s) as response:
            response.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        snippet = _snippet(exc, target.token)
        reason = f"HTTP {exc.code} {exc.reason}".rstrip()
        raise StatusReportError(
            f"{where}: {reason}" + (f": {snippet}" if snippet else ""), http_status=exc.code
        ) from None
    except TimeoutError:
        raise StatusReportError(f"{where}: no answer from {origin} in {timeout_s:g}s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):  # the connection itself timed out
            raise StatusReportError(f"{where}: no answer from {origin} in {timeout_s:g}s") from None
        raise StatusReportError(f"{where}: cannot reach {origin}: {exc.reason}") from None
    except (OSError, HTTPException) as exc:
        raise StatusReportError(
            f"{where}: connection to {origin} failed: {exc.__class__.__name__}: {exc}"
        ) from None


def _request_parts(
    target: StatusTarget, sha: str, status: str, target_url: str, description: str, context: str
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The URL, JSON body and headers of one status POST for the target's forge."""
    api = target.api_url.strip().rstrip("/")
    state = BUILDIT_TO_FORGE[target.kind][status]
    body: dict[str, Any] = {"state": state}
    if target_url:
        body["target_url"] = target_url
    if description:
        body["description"] = _truncate(description)
    headers = {"Content-Type": "application/json", "User-Agent": "BuildIt"}
    if target.kind == "gitlab":
        body["name"] = context
        url = f"{api}/projects/{quote(target.repo.strip(), safe='')}/statuses/{sha}"
        headers.update({"Accept": "application/json", "PRIVATE-TOKEN": target.token})
        return url, body, headers
    body["context"] = context
    owner, _, name = target.repo.strip().partition("/")
    url = f"{api}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{sha}"
    if target.kind == "github":
        headers.update(
            {
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {target.token}",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        )
    else:
        headers.update({"Accept": "application/json", "Authorization": f"token {target.token}"})
    return url, body, headers


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _origin(api_url: str) -> str:
    parts = urlsplit(api_url.strip())
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _snippet(error: urllib.error.HTTPError, token: str) -> str:
    """The start of an error response, one line, with the token masked should the server echo it."""
    try:
        raw = error.read(2048)
    except (OSError, HTTPException):
        return ""
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    if token:
        text = text.replace(token, "***")
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn a 3xx into an HTTPError instead of re-sending (the token, as a GET) elsewhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None
