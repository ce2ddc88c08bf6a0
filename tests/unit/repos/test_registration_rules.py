"""Who may register which repository location, decided from the text alone (no disk, no network)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from controller.auth.caller import Caller
from controller.auth.permissions import OrgRole, Role
from controller.errors import Forbidden
from controller.git.sources import host_allowed, host_patterns, is_internal_host, locate
from controller.repos.commands import check_may_register

ORG, TENANT = uuid.uuid4(), uuid.uuid4()


def maintainer() -> Caller:
    return Caller("key", "max", ORG, TENANT, Role.MAINTAINER, org_role=int(OrgRole.MEMBER))


def org_admin() -> Caller:
    return Caller("key", "admin", ORG, TENANT, Role.ADMIN, org_role=int(OrgRole.ADMIN))


@pytest.mark.parametrize(
    ("text", "kind", "scheme", "host"),
    [
        ("https://user:tok@GitHub.com:443/a/b.git", "remote", "https", "github.com"),
        ("  ssh://git@host.example:2222/x.git ", "remote", "ssh", "host.example"),
        ("git+ssh://host.example/x.git", "remote", "ssh", "host.example"),
        ("git@github.com:owner/app.git", "remote", "ssh", "github.com"),
        ("http://[::1]:8080/x.git", "remote", "http", "::1"),
        ("git://example.org/x.git", "remote", "git", "example.org"),
        ("file:///srv/repos/app", "local", "file", ""),
        ("/srv/repos/app", "local", "", ""),
        ("relative/dir", "local", "", ""),
        ("host:path", "local", "", ""),  # git would say ssh; BuildIt reads a relative path
        ("ftp://example.org/x", "unknown", "ftp", ""),
        ("https:///no-host", "unknown", "https", ""),
    ],
)
def test_locate_reads_the_text_only(text: str, kind: str, scheme: str, host: str) -> None:
    where = locate(text)
    assert (where.kind, where.scheme, where.host) == (kind, scheme, host)


def test_locate_never_looks_at_the_disk(tmp_path: Path) -> None:
    assert locate(str(tmp_path)) == locate(str(tmp_path / "does-not-exist"))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.9",
        "169.254.169.254",
        "::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",
        "fe80::1",
        "127.1",  # the shorthand IPv4 forms the resolver takes too
        "0x7f.0.0.1",
        "2130706433",
        "localhost",
        "git.localhost",
        "LOCALHOST.",
    ],
)
def test_internal_hosts(host: str) -> None:
    assert is_internal_host(host)


@pytest.mark.parametrize("host", ["github.com", "8.8.8.8", "2001:4860:4860::8888", "internal.example.com"])
def test_external_hosts(host: str) -> None:
    assert not is_internal_host(host)  # names are not resolved: BUILDIT_REPO_HOSTS is the fence


def test_host_patterns_and_matching() -> None:
    patterns = host_patterns(" GitHub.com, *.git.example.com ,127.0.0.1,[::1],, ")
    assert patterns == ("github.com", "*.git.example.com", "127.0.0.1", "::1")
    assert host_allowed("github.com", patterns) and host_allowed("a.b.git.example.com", patterns)
    assert not host_allowed("git.example.com", patterns)  # *.domain: subdomains only
    assert not host_allowed("evilgithub.com", patterns) and not host_allowed("github.com.evil", patterns)
    assert host_allowed("::1", patterns) and not host_allowed("127.0.0.2", patterns)
    assert host_patterns("") == ()


@pytest.mark.parametrize("bad", ["https://github.com", "github.com:443", "*", "*.10.0.0.1", "a b", "x/y"])
def test_bad_host_patterns_are_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ValueError, match=r"BUILDIT_REPO_HOSTS: .* is not a host name"):
        host_patterns(f"github.com,{bad}")


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/app.git",
        "ssh://git@github.com/o/app.git",
        "git@github.com:o/app.git",
        "https://8.8.8.8/o/app.git",
        "ftp://example.org/x",  # not a location at all: parse_source refuses it saying why
    ],
)
def test_maintainers_may_register_encrypted_urls_on_any_external_host_by_default(url: str) -> None:
    check_may_register(url, maintainer(), ())


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("/srv/repos/app", "path on the controller's machine"),
        ("file:///srv/repos/app", "path on the controller's machine"),
        ("relative", "path on the controller's machine"),
        ("http://github.com/o/app.git", "http:// URLs are unencrypted"),
        ("git://github.com/o/app.git", "git:// URLs are unencrypted"),
        ("https://127.0.0.1:8443/x.git", "on the controller's own machine or network"),
        ("https://169.254.169.254/latest", "on the controller's own machine or network"),
        ("git@10.0.0.5:o/app.git", "on the controller's own machine or network"),
        ("https://localhost/x.git", "on the controller's own machine or network"),
    ],
)
def test_maintainers_are_refused_internal_and_unencrypted_locations(url: str, why: str) -> None:
    with pytest.raises(Forbidden, match=why):
        check_may_register(url, maintainer(), ())
    check_may_register(url, org_admin(), ())  # organization owners and admins may


def test_with_an_allow_list_maintainers_reach_only_its_hosts() -> None:
    allowed = host_patterns("github.com,*.corp.example,127.0.0.1")
    check_may_register("https://github.com/o/a.git", maintainer(), allowed)
    check_may_register("git@git.corp.example:o/a.git", maintainer(), allowed)
    check_may_register("https://127.0.0.1:9/x.git", maintainer(), allowed)  # listed: allowed
    with pytest.raises(Forbidden, match=r"host gitlab.com is not one .*BUILDIT_REPO_HOSTS: github.com"):
        check_may_register("https://gitlab.com/o/a.git", maintainer(), allowed)
    with pytest.raises(Forbidden, match="unencrypted"):
        check_may_register("http://github.com/o/a.git", maintainer(), allowed)
    with pytest.raises(Forbidden, match="path on the controller's machine"):
        check_may_register("/srv/x", maintainer(), allowed)
    check_may_register("https://gitlab.com/o/a.git", org_admin(), allowed)


def test_the_setting_is_read_at_start_and_a_bad_entry_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.settings import ControllerSettings

    monkeypatch.setenv("BUILDIT_REGISTRATION_TOKEN", "t")
    monkeypatch.delenv("BUILDIT_REPO_HOSTS", raising=False)
    assert ControllerSettings.from_env(data_dir=str(tmp_path / "d")).repo_hosts == ()
    monkeypatch.setenv("BUILDIT_REPO_HOSTS", "github.com, *.corp.example")
    settings = ControllerSettings.from_env(data_dir=str(tmp_path / "d"))
    assert settings.repo_hosts == ("github.com", "*.corp.example")
    monkeypatch.setenv("BUILDIT_REPO_HOSTS", "github.com,https://gitlab.com")
    with pytest.raises(ValueError, match=r"BUILDIT_REPO_HOSTS: 'https://gitlab\.com' is not a host name"):
        ControllerSettings.from_env(data_dir=str(tmp_path / "d"))
