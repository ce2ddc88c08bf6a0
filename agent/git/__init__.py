"""The agent's Git: fill a stage's workspace with its repository at one exact commit.

`fetch` is the entry point (`GitFetcher`: a per-repository cache, one-commit fetches, checkouts);
`smart_http` speaks the one-request smart-HTTP fetch it tries first; `layout` reads and writes the
parts of Git's repository layout where a `git` process would cost more. The `git` command does the
rest; the agent imports no Git library.
"""
