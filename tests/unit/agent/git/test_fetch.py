"""agent.git.fetch's pure parts: URL redaction, cache naming, git's environment, error lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.git.fetch import GitFetcher, _reason, cache_dir_for, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8080/git/abc.git", "http://127.0.0.1:8080/git/abc.git"),
        ("https://user:s3cret@ci.example.com/git/abc.git", "https://ci.example.com/git/abc.git"),
        (
            "https://token@ci.example.com:8443/r.git?access_token=s3cret#x",
            "https://ci.example.com:8443/r.git",
        ),
        ("http://[::1]:9000/r.git", "http://[::1]:9000/r.git"),
    ],
)
def test_redact_url_drops_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_each_repository_url_gets_its_own_cache(tmp_path: Path) -> None:
    a = cache_dir_for(tmp_path, "http://h/git/a.git")
    assert a == cache_dir_for(tmp_path, "http://h/git/a.git")
    assert a != cache_dir_for(tmp_path, "http://h/git/b.git")
    assert a.parent == tmp_path / "git-cache" and a.name.endswith(".git") and len(a.name) == 16 + 4


def test_git_runs_with_a_clean_environment_and_the_token_only_in_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_TRACE_CURL", "1")  # would print headers
    monkeypatch.setenv("GIT_ASKPASS", "/usr/bin/askpass")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    env = GitFetcher(tmp_path)._env(protocols="http:https", token="t0k3n")
    assert "GIT_TRACE_CURL" not in env and "GIT_ASKPASS" not in env
    assert env["https_proxy"] == "http://proxy:3128"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ALLOW_PROTOCOL"] == "http:https"
    assert env["HOME"] == str(tmp_path / "git-home")
    config = {
        env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))
    }
    assert config["http.extraHeader"] == "Authorization: Bearer t0k3n"
    assert config["http.followRedirects"] == "false"
    assert [name for name, value in env.items() if "t0k3n" in value] == [
        next(k for k, v in env.items() if v == "http.extraHeader").replace("KEY", "VALUE")
    ]
    assert "http.extraHeader" not in GitFetcher(tmp_path)._env(protocols="file").values()


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            "fatal: could not read Username for 'http://h': terminal prompts disabled\n",
            "the server refused the agent's token (HTTP 401)",
        ),
        (
            "fatal: unable to access 'http://h/r.git/': The requested URL returned error: 403\n",
            "the server refused access (HTTP 403)",
        ),
        (
            "warning: x\nfatal: unable to access 'http://u:pw@h:1/r.git/': Failed to connect to h port 1\n",
            "unable to access 'http://h:1/r.git/': Failed to connect to h port 1",
        ),
        ("error: something mentions t0k3n\n", "something mentions ***"),
        ("", "git failed without a message"),
        ("fatal: " + "x" * 400, "x" * 297 + "..."),
    ],
)
def test_git_errors_become_one_short_line(stderr: str, reason: str) -> None:
    assert _reason(stderr, "t0k3n") == reason
