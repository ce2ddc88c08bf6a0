"""Reading push webhooks from GitHub, Gitea and GitLab, and matching them to registered repositories.

The payloads below are trimmed copies of each forge's documented push payloads: fields this code
does not read are mostly dropped, but the structure (nesting, field names, null/zero conventions)
is the forge's.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from controller.hooks.payloads import PayloadError, PushEvent, parse_generic, parse_push, same_repository

ZERO = "0" * 40

GITHUB_PUSH: dict[str, Any] = {
    "ref": "refs/heads/main",
    "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    "created": False,
    "deleted": False,
    "forced": False,
    "base_ref": None,
    "compare": "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...0d1a26e67d8f",
    "commits": [
        {
            "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
            "distinct": True,
            "message": "Update README.md",
            "timestamp": "2019-05-15T15:20:41Z",
            "url": "https://github.com/Codertocat/Hello-World/commit/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "author": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
            "added": [],
            "removed": [],
            "modified": ["README.md"],
        }
    ],
    "head_commit": {"id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "message": "Update README.md"},
    "repository": {
        "id": 186853002,
        "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
        "name": "Hello-World",
        "full_name": "Codertocat/Hello-World",
        "private": False,
        "owner": {"name": "Codertocat", "login": "Codertocat", "id": 21031067},
        "html_url": "https://github.com/Codertocat/Hello-World",
        "url": "https://github.com/Codertocat/Hello-World",
        "git_url": "git://github.com/Codertocat/Hello-World.git",
        "ssh_url": "git@github.com:Codertocat/Hello-World.git",
        "clone_url": "https://github.com/Codertocat/Hello-World.git",
        "svn_url": "https://github.com/Codertocat/Hello-World",
        "default_branch": "main",
        "master_branch": "main",
    },
    "pusher": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
    "sender": {"login": "Codertocat", "id": 21031067, "type": "User"},
}

GITHUB_PING: dict[str, Any] = {
    "zen": "Keep it logically awesome.",
    "hook_id": 109948940,
    "hook": {"type": "Repository", "id": 109948940, "active": True, "events": ["push"], "config": {}},
    "repository": GITHUB_PUSH["repository"],
    "sender": GITHUB_PUSH["sender"],
}

GITEA_PUSH: dict[str, Any] = {
    "ref": "refs/heads/develop",
    "before": "28e1879d029cb852e4844d9c718537df08844e03",
    "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
    "compare_url": "http://localhost:3000/gitea/webhooks/compare/"
    "28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
    "commits": [
        {
            "id": "bffeb74224043ba2feb48d137756c8a9331c449a",
            "message": "Webhooks Yay!",
            "url": "http://localhost:3000/gitea/webhooks/commit/bffeb74224043ba2feb48d137756c8a9331c449a",
            "author": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
            "committer": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
            "timestamp": "2017-03-13T13:52:11-04:00",
        }
    ],
    "repository": {
        "id": 140,
        "owner": {"id": 1, "login": "gitea", "full_name": "Gitea", "username": "gitea"},
        "name": "webhooks",
        "full_name": "gitea/webhooks",
        "private": False,
        "fork": False,
        "html_url": "http://localhost:3000/gitea/webhooks",
        "ssh_url": "ssh://gitea@localhost:2222/gitea/webhooks.git",
        "clone_url": "http://localhost:3000/gitea/webhooks.git",
        "original_url": "https://github.com/upstream/elsewhere.git",
        "url": "http://localhost:3000/api/v1/repos/gitea/webhooks",
        "default_branch": "master",
    },
    "pusher": {"id": 1, "login": "gitea", "username": "gitea"},
    "sender": {"id": 1, "login": "gitea", "username": "gitea"},
}

GITLAB_PUSH: dict[str, Any] = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/master",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_id": 4,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Diaspora",
        "description": "",
        "web_url": "http://example.com/mike/diaspora",
        "avatar_url": None,
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "namespace": "Mike",
        "visibility_level": 0,
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master",
        "homepage": "http://example.com/mike/diaspora",
        "url": "git@example.com:mike/diaspora.git",
        "ssh_url": "git@example.com:mike/diaspora.git",
        "http_url": "http://example.com/mike/diaspora.git",
    },
    "repository": {
        "name": "Diaspora",
        "url": "git@example.com:mike/diaspora.git",
        "description": "",
        "homepage": "http://example.com/mike/diaspora",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "visibility_level": 0,
    },
    "commits": [
        {
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "message": "fixed readme",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "url": "http://example.com/mike/diaspora/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
            "added": ["CHANGELOG"],
            "modified": ["app/controller/application.rb"],
            "removed": [],
        }
    ],
    "total_commits_count": 1,
}

GITLAB_TAG_PUSH: dict[str, Any] = {
    **copy.deepcopy(GITLAB_PUSH),
    "object_kind": "tag_push",
    "event_name": "tag_push",
    "before": ZERO,
    "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    "ref": "refs/tags/v1.0.0",
    "checkout_sha": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    "commits": [],
}


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def changed(payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    result = copy.deepcopy(payload)
    result.update(fields)
    return result


# --- Pushes -----------------------------------------------------------------------------------------


def test_github_push() -> None:
    assert parse_push("github", "push", body(GITHUB_PUSH)) == PushEvent(
        clone_urls=(
            "https://github.com/Codertocat/Hello-World.git",
            "git@github.com:Codertocat/Hello-World.git",
            "git://github.com/Codertocat/Hello-World.git",
            "https://github.com/Codertocat/Hello-World",
        ),
        branch="main",
        after="0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    )


def test_gitea_push_leaves_out_the_mirror_upstream_and_api_url() -> None:
    event = parse_push("gitea", "push", body(GITEA_PUSH))
    assert event == PushEvent(
        clone_urls=(
            "http://localhost:3000/gitea/webhooks.git",
            "ssh://gitea@localhost:2222/gitea/webhooks.git",
            "http://localhost:3000/gitea/webhooks",
        ),
        branch="develop",
        after="bffeb74224043ba2feb48d137756c8a9331c449a",
    )


def test_gitlab_push() -> None:
    assert parse_push("gitlab", "Push Hook", body(GITLAB_PUSH)) == PushEvent(
        clone_urls=(
            "http://example.com/mike/diaspora.git",
            "git@example.com:mike/diaspora.git",
            "http://example.com/mike/diaspora",
        ),
        branch="master",
        after="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    )


def test_gitlab_older_payload_with_repository_block_only() -> None:
    payload = changed(GITLAB_PUSH)
    del payload["project"]
    event = parse_push("gitlab", "Push Hook", body(payload))
    assert event is not None
    assert "http://example.com/mike/diaspora.git" in event.clone_urls


def test_gitlab_system_hook_push() -> None:
    event = parse_push("gitlab", "System Hook", body(GITLAB_PUSH))
    assert event is not None and event.branch == "master"
    assert parse_push("gitlab", "System Hook", body(GITLAB_TAG_PUSH)) is None
    assert (
        parse_push("gitlab", "System Hook", body({"event_name": "repository_update", "changes": []})) is None
    )


def test_event_header_is_case_insensitive() -> None:
    assert parse_push("github", "Push", body(GITHUB_PUSH)) is not None
    assert parse_push("gitlab", "push hook", body(GITLAB_PUSH)) is not None


def test_branch_with_slashes() -> None:
    event = parse_push("github", "push", body(changed(GITHUB_PUSH, ref="refs/heads/release/1.2")))
    assert event is not None and event.branch == "release/1.2"


def test_other_refs_have_no_branch() -> None:
    event = parse_push("gitea", "push", body(changed(GITEA_PUSH, ref="refs/notes/commits")))
    assert event is not None and event.branch is None and event.after == GITEA_PUSH["after"]


def test_form_encoded_delivery() -> None:
    # GitHub's and Gitea's "application/x-www-form-urlencoded" content type: payload=<json>.
    form = urlencode({"payload": json.dumps(GITHUB_PUSH)}).encode()
    assert parse_push("github", "push", form) == parse_push("github", "push", body(GITHUB_PUSH))


# --- Branch deletion --------------------------------------------------------------------------------


def test_github_branch_deletion() -> None:
    deleted = changed(GITHUB_PUSH, after=ZERO, deleted=True, commits=[], head_commit=None)
    event = parse_push("github", "push", body(deleted))
    assert event is not None and event.branch == "main" and event.after is None


def test_gitlab_branch_deletion() -> None:
    deleted = changed(GITLAB_PUSH, after=ZERO, checkout_sha=None, commits=[], total_commits_count=0)
    event = parse_push("gitlab", "Push Hook", body(deleted))
    assert event is not None and event.branch == "master" and event.after is None


def test_sha256_repository_deletion() -> None:
    event = parse_push("gitea", "push", body(changed(GITEA_PUSH, after="0" * 64)))
    assert event is not None and event.after is None


# --- Not a branch push: ignored ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forge", "event", "payload"),
    [
        ("github", "ping", GITHUB_PING),
        ("github", "issues", {"action": "opened", "issue": {}, "repository": GITHUB_PUSH["repository"]}),
        ("github", "push", changed(GITHUB_PUSH, ref="refs/tags/simple-tag")),
        ("gitea", "create", {"ref": "v1.0", "ref_type": "tag", "repository": GITEA_PUSH["repository"]}),
        ("gitea", "push", changed(GITEA_PUSH, ref="refs/tags/v1.0")),
        ("gitlab", "Tag Push Hook", GITLAB_TAG_PUSH),
        ("gitlab", "Merge Request Hook", {"object_kind": "merge_request", "project": GITLAB_PUSH["project"]}),
    ],
)
def test_non_push_events_are_ignored(forge: str, event: str, payload: dict[str, Any]) -> None:
    assert parse_push(forge, event, body(payload)) is None


def test_non_push_event_body_is_not_even_parsed() -> None:
    assert parse_push("github", "ping", b"not json at all") is None


# --- Malformed deliveries -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "  "])
def test_missing_event_header(header: str | None) -> None:
    with pytest.raises(PayloadError, match="missing X-GitHub-Event header"):
        parse_push("github", header, body(GITHUB_PUSH))


@pytest.mark.parametrize("raw", [b"", b"{", b"{'ref': 'x'}", b"\xff\xfe\x00garbage", b"payload=%7B"])
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        parse_push("github", "push", raw)


@pytest.mark.parametrize(
    "wrap", [lambda b: b, lambda b: b"payload=" + b.replace(b"[", b"%5B").replace(b"]", b"%5D")]
)
def test_deeply_nested_json_is_refused_before_decoding(wrap: Any) -> None:
    deep = b'{"ref": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(PayloadError, match="nests 10001 levels deep"):
        parse_push("github", "push", wrap(deep))
    with pytest.raises(PayloadError, match="nests 10001 levels deep"):
        parse_generic(deep)


def test_json_that_is_not_an_object() -> None:
    with pytest.raises(PayloadError, match="not an object"):
        parse_push("gitea", "push", b'["refs/heads/main"]')


def test_push_without_repository() -> None:
    payload = changed(GITHUB_PUSH)
    del payload["repository"]
    with pytest.raises(PayloadError, match="push payload has no 'repository'"):
        parse_push("github", "push", body(payload))


def test_gitlab_push_without_project_or_repository() -> None:
    payload = changed(GITLAB_PUSH)
    del payload["project"], payload["repository"]
    with pytest.raises(PayloadError, match="no 'project' or 'repository'"):
        parse_push("gitlab", "Push Hook", body(payload))


def test_repository_without_any_url() -> None:
    payload = changed(GITEA_PUSH, repository={"id": 140, "name": "webhooks", "original_url": "https://x/y"})
    with pytest.raises(PayloadError, match="repository has no URL"):
        parse_push("gitea", "push", body(payload))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ref": None}, "no 'ref'"),
        ({"ref": ""}, "no 'ref'"),
        ({"ref": "refs/heads/"}, "empty branch name"),
        ({"after": None}, "no 'after'"),
        ({"after": 12345}, "no 'after'"),
        ({"after": "main"}, "is not a commit sha"),
        ({"after": "../../etc/passwd"}, "is not a commit sha"),
    ],
)
def test_push_with_bad_fields(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_push("github", "push", body(changed(GITHUB_PUSH, **fields)))


def test_gitlab_push_hook_with_another_object_kind() -> None:
    with pytest.raises(PayloadError, match="object_kind 'tag_push'"):
        parse_push("gitlab", "Push Hook", body(GITLAB_TAG_PUSH))


def test_unknown_forge() -> None:
    with pytest.raises(ValueError, match="unknown forge 'bitbucket'"):
        parse_push("bitbucket", "repo:push", body(GITHUB_PUSH))


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


# --- Repository URL matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "candidate", "expected"),
    [
        # The same repository spelled differently.
        ("https://github.com/owner/name", "https://github.com/owner/name.git", True),
        ("https://github.com/owner/name.git", "https://github.com/owner/name/", True),
        ("https://github.com/owner/name", "http://github.com/owner/name", True),
        ("https://GitHub.COM/owner/name", "https://github.com/owner/name", True),
        ("https://user:pa55@github.com/owner/name.git", "https://github.com/owner/name", True),
        ("https://github.com:443/owner/name", "https://github.com/owner/name", True),
        ("git@github.com:owner/name.git", "ssh://git@github.com/owner/name", True),
        ("git@github.com:owner/name.git", "https://github.com/owner/name", True),
        ("ssh://git@github.com:22/owner/name.git", "git@github.com:owner/name.git", True),
        ("https://github.com/owner/name", "git://github.com/owner/name.git", True),
        ("https://gitlab.example/group/sub/project", "git@gitlab.example:group/sub/project.git", True),
        # An SSH port says nothing about the HTTPS one.
        ("http://localhost:3000/gitea/webhooks", "ssh://gitea@localhost:2222/gitea/webhooks.git", True),
        ("http://localhost:3000/gitea/webhooks", "http://localhost:3000/gitea/webhooks.git", True),
        ("https://h.example/a/b", "ssh://git@h.example:2222/a/b.git", True),
        # Different repositories.
        ("https://github.com/owner/name", "https://github.com/owner/other", False),
        ("https://github.com/owner/name", "https://github.com/other/name", False),
        ("https://github.com/owner/name", "https://gitlab.com/owner/name", False),
        ("https://github.com/owner/name", "https://github.com/owner/name-fork", False),
        ("https://github.com/owner/name", "https://github.com/owner/name/tree/main", False),
        ("https://github.com/owner/name", "https://github.com/Owner/Name", False),  # path keeps its case
        ("http://localhost:3000/a/b", "http://localhost:3001/a/b", False),  # another server
        ("https://github.com/owner/name", "https://github.com/", False),
        # Unusable input never matches.
        ("", "", False),
        ("https://github.com/owner/name", "", False),
        ("https://github.com:notaport/owner/name", "https://github.com/owner/name", False),
        ("https:///owner/name", "https:///owner/name", False),
        # A local path is not a remote.
        ("/srv/git/owner/name", "https://github.com/owner/name", False),
    ],
)
def test_same_repository(registered: str, candidate: str, expected: bool) -> None:
    assert same_repository(registered, candidate) is expected
    assert same_repository(candidate, registered) is expected


def test_local_paths_compare_resolved(tmp_path: Path) -> None:
    repo = tmp_path / "repos" / "app"
    repo.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(repo)
    assert same_repository(str(repo), str(repo) + "/")
    assert same_repository(str(repo), str(tmp_path / "repos" / "." / "other" / ".." / "app"))
    assert same_repository(str(repo), str(link))
    assert same_repository(str(repo), repo.as_uri())
    assert not same_repository(str(repo), str(tmp_path / "repos" / "app2"))
    assert not same_repository(str(repo), str(repo) + ".git")


@pytest.mark.parametrize(
    "registered",
    [
        "https://github.com/Codertocat/Hello-World",
        "https://github.com/Codertocat/Hello-World.git",
        "git@github.com:Codertocat/Hello-World.git",
        "ssh://git@github.com/Codertocat/Hello-World.git",
    ],
)
def test_github_payload_matches_every_registered_form(registered: str) -> None:
    event = parse_push("github", "push", body(GITHUB_PUSH))
    assert event is not None
    assert any(same_repository(registered, url) for url in event.clone_urls)


def test_gitlab_payload_matches_registered_https_url() -> None:
    event = parse_push("gitlab", "Push Hook", body(GITLAB_PUSH))
    assert event is not None
    assert any(same_repository("https://example.com/mike/diaspora", url) for url in event.clone_urls)
    assert not any(same_repository("https://example.com/mike/other", url) for url in event.clone_urls)


# --- the generic hook's optional body ----------------------------------------------------------

SHA = "a" * 40


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", None),
        (b"  \n", None),
        (json.dumps({"ref": "refs/heads/main", "after": SHA}).encode(), ("main", SHA)),
        (json.dumps({"ref": "refs/heads/release/1.x", "after": SHA.upper()}).encode(), ("release/1.x", SHA)),
        (json.dumps({"ref": "refs/tags/v1", "after": SHA}).encode(), None),  # a tag: fetch everything
        (json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode(), None),  # a deletion
        (json.dumps({"ref": "refs/heads/", "after": SHA}).encode(), None),
    ],
)
def test_generic_hook_body(body: bytes, expected: tuple[str, str] | None) -> None:
    assert parse_generic(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "not an object"),
        (json.dumps({"after": SHA}).encode(), 'JSON {"ref"'),
        (json.dumps({"ref": "refs/heads/main"}).encode(), "no 'after'"),
        (json.dumps({"ref": "refs/heads/main", "after": "HEAD"}).encode(), "not a commit sha"),
    ],
)
def test_generic_hook_body_errors_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_generic(body)
