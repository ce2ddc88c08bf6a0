"""Repository, BranchHead and CommitTrigger: what is watched, what was seen, what is to be built.

- `Repository`: one registered repository (URL or local path) with the branches to build, how
  often to poll it, its webhook secret and, optionally, where to report commit statuses. Its
  bare mirror lives under the data dir (`<data dir>/mirrors/<id>.git`).
- `BranchHead`: the last commit seen on each watched branch. A new head is compared with it, so
  a controller restart neither misses nor repeats a push.
- `CommitTrigger`: a commit to build, written before anything runs. Unique per (repository,
  sha) for automatic triggers, so the watcher, the poller and a webhook seeing the same push
  make one run; `status` goes `pending` -> `done` once its run exists, and pending rows are
  picked up again after a restart.

Secrets (`webhook_secret`, `status_token`) are stored because they must be used (an HMAC
needs the secret itself): sealed under the controller's master key (AES-256-GCM, bound to the row
and column; see controller.secrets.atrest), and never returned by the API.
"""

from __future__ import annotations

from piccolo.columns import JSON, UUID, Boolean, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from controller.orgs.tables import Organization, Tenant


class Repository(Table):
    """A watched repository. `branches` is a JSON list of globs (`["main", "release/*"]`)."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    name = Varchar(length=200)
    url = Text()
    kind = Varchar(length=16)  # "local" (watched with watchfiles) or "remote" (polled + webhooks)
    branches = JSON(default=[])
    poll_interval_s = Integer(default=60)
    run_each_commit = Boolean(default=False)
    webhook_secret = Text()  # sealed under the master key (controller.secrets.atrest)
    status = Varchar(length=16, default="pending")  # pending, ok, error
    status_message = Text(default="")
    last_fetched_at = Timestamptz(null=True, default=None)
    status_kind = Varchar(length=16, default="")  # "", github, gitea, gitlab
    status_api_url = Text(default="")
    status_repo = Varchar(length=255, default="")  # owner/name (GitHub, Gitea) or project id/path (GitLab)
    status_token = Text(default="")  # sealed under the master key when set
    created_at = Timestamptz()

    # Unique (tenant, name): index repository_tenant_name_unique, made by a hand-written migration.


class BranchHead(Table):
    """The newest commit seen on one branch of a repository."""

    id = UUID(primary_key=True)
    repository = ForeignKey(references=Repository, null=False, on_delete=OnDelete.cascade)
    branch = Varchar(length=255)
    sha = Varchar(length=64)
    updated_at = Timestamptz()

    # Unique (repository, branch): index branch_head_repository_branch_unique (hand-written migration).


class CommitTrigger(Table):
    """A commit to build (see the module docstring). `source` says who asked: watch, poll, webhook,
    api, cron. `run` is set once the run exists (null for a commit without `.buildit.kdl`)."""

    id = UUID(primary_key=True)
    org = ForeignKey(references=Organization, null=False, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, null=False, on_delete=OnDelete.cascade)
    repository = ForeignKey(references=Repository, null=False, on_delete=OnDelete.cascade)
    sha = Varchar(length=64)
    branch = Varchar(length=255)
    source = Varchar(length=16)
    dedupe_key = Varchar(length=128)  # "<sha>" for automatic triggers; unique per repository
    status = Varchar(length=16, default="pending", index=True)  # pending, done
    outcome = Text(default="")  # what happened: "run 12", "no .buildit.kdl at this commit", ...
    run = UUID(null=True, default=None)
    created_at = Timestamptz()

    # Unique (repository, dedupe_key): index commit_trigger_repository_dedupe_unique (hand-written
    # migration). Manual and cron triggers get a fresh key each, so only automatic ones dedupe.
