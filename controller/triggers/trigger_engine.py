"""The trigger engine: from a change in a watched repository to a queued run, with no polling loop
where an event can be had.

For every registered repository it keeps a bare mirror under the data dir and:

- a local repository is watched (`watchfiles` on its refs): a commit is seen at once;
- a remote one has its branch heads listed every `poll_interval_s`, and a webhook makes it look
  now;
- both are also synced once at start, which catches what was pushed while the controller was down.

A sync fetches into the mirror, compares each watched branch's head with the stored `BranchHead`,
and writes a `CommitTrigger` per commit to build (the newest of a push, or each of them when the
repository says `run_each_commit`) in the same transaction as the new heads. Triggers are then
turned into runs: `.buildit.kdl` is read at the commit from the mirror's object store, no file
means no run, an invalid file means a run in `error` showing the diagnostics, a valid one is
planned with `git.*` from the commit and a workspace that agents fetch from the mirror. Because
the trigger row is durable before the run is made, a restart in between loses nothing, and the
unique (repository, sha) rule makes the watcher, the poller and a webhook seeing the same push
produce one run.

One engine watches the repositories of every tenant. Each repository row carries its org and
tenant, and so do its pipeline, triggers and runs: a run is planned in the repository's own tenant
and only agents serving that tenant take its stages. Looking a repository up for a caller is
scoped to the caller's tenant (`repository(id, tenant)`); webhooks, which come from forges, find
repositories of any tenant and are authenticated by each one's secret.

Cron triggers declared in the pipeline run on the repository's default branch (or the branch they
name) at their schedule, read from the newest `.buildit.kdl` of that branch.

All Git work is blocking (dulwich) and runs in a worker thread, one operation at a time per
repository (a lock per repository).

The stateless Git helpers (one worker-thread hop each) are in controller.triggers.gitwork.

Why one module past 500 lines: registration, watching, polling, webhooks, cron and turning a
commit into a run all act on the same per-repository state (`_Active`: its mirror, lock and tasks);
apart, each would reach into the others' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from agent.contract.types import WorkspaceSource
from controller.errors import BuildItError, Invalid, NotFound
from controller.git.mirror import GitError, Mirror, RepoSource, parse_source, redact, remote_branches
from controller.git.watch import watch_refs
from controller.pipelines.parsing import parse
from controller.repos import services as repos
from controller.repos.services import RepoRow, RepoSettings, check_settings
from controller.scheduling.model import RunState
from controller.scheduling.scheduler import Scheduler
from controller.secrets.crypto import SecretBox
from controller.triggers.gitwork import (
    FETCH_TIMEOUT_S,
    PIPELINE_FILE,
    default_branch,
    first_fetch,
    in_thread,
    pipeline_at,
    private_dir,
)
from controller.triggers.schedule import cron_schedule, next_cron, runs_on_push

log = logging.getLogger(__name__)

RETRY_WATCH_S = 5.0
WATCH_SETUP_S = 0.5
#: Seconds after a fetch that brought commits before the mirror's packs are merged (see
#: `_maintain_later`): long enough for the new runs' agents to have fetched.
MAINTAIN_DELAY_S = 2.0


@dataclass
class _Active:
    """A registered repository being watched."""

    repo: RepoRow
    mirror: Mirror
    lock: asyncio.Lock
    tasks: list[asyncio.Task[None]]
    config_changed: asyncio.Event
    maintenance: asyncio.Task[None] | None = None


class TriggerEngine:
    """See the module docstring. `start()` after the scheduler, `stop()` before it."""

    def __init__(
        self, scheduler: Scheduler, org: UUID, tenant: UUID, mirrors_dir: Path, box: SecretBox
    ) -> None:
        """`org`/`tenant` own the repositories registered without an owner (`buildit up --repo`);
        `box` seals and opens the repositories' webhook secrets and status tokens."""
        self.scheduler = scheduler
        self.default_owner = (org, tenant)
        self.mirrors_dir = mirrors_dir
        self.box = box
        #: Where agents fetch mirrors from (`<controller URL>/git`); set once HTTP listens.
        self.git_base_url = ""
        self._active: dict[UUID, _Active] = {}
        #: Pipeline id -> its repository's id: `repository_of` is on every trigger's path.
        self._by_pipeline: dict[UUID, UUID] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Called with (repo, run) for each run made; the commit-status reporter listens here.
        self.run_listeners: list[Callable[[RepoRow, RunState, str], None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Watch every registered repository; catch up on what changed while stopped."""
        private_dir(self.mirrors_dir)
        for repo in await repos.list_repositories(None, self.box):
            self._activate(repo)

    async def stop(self) -> None:
        """Stop watching (running Git work in threads finishes on its own)."""
        tasks = [t for active in self._active.values() for t in active.tasks] + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for active in self._active.values():
            active.mirror.close()
        self._active.clear()
        self._by_pipeline.clear()

    def git_url(self, repo_id: UUID) -> str:
        """The smart-HTTP URL of a repository's mirror, as agents use it."""
        return f"{self.git_base_url}/{repo_id}.git"

    def mirror_path(self, repo_id: UUID) -> Path:
        """Where a repository's bare mirror lives."""
        return self.mirrors_dir / f"{repo_id}.git"

    def served(self, repo_id: UUID) -> tuple[Mirror, asyncio.Lock] | None:
        """A watched repository's mirror and its lock, for the smart-HTTP server (None if unknown)."""
        active = self._active.get(repo_id)
        return (active.mirror, active.lock) if active else None

    def lock(self, repo_id: UUID) -> asyncio.Lock | None:
        """Held while a repository's mirror changes; the smart-HTTP server reads under it too."""
        active = self._active.get(repo_id)
        return active.lock if active else None

    def repository(self, repo_id: UUID, tenant: UUID | None = None) -> RepoRow | None:
        """A watched repository (as of its last sync) of `tenant` (None: of any tenant)."""
        active = self._active.get(repo_id)
        if active is None or (tenant is not None and active.repo.tenant != tenant):
            return None
        return active.repo

    def repository_of(self, pipeline_id: UUID) -> UUID | None:
        """The watched repository a pipeline belongs to (None for pipelines registered by source)."""
        return self._by_pipeline.get(pipeline_id)

    def repositories(self, tenant: UUID | None = None) -> list[RepoRow]:
        """Every watched repository of `tenant` (None: of every tenant)."""
        return [a.repo for a in self._active.values() if tenant is None or a.repo.tenant == tenant]

    # ------------------------------------------------------------------ registration

    async def register(
        self, settings: RepoSettings, owner: tuple[UUID, UUID] | None = None, base: Path | None = None
    ) -> RepoRow:
        """Check, mirror and store a repository of `owner` (org, tenant), then watch it.

        The first fetch happens here, so a bad URL, an unreachable remote or a directory that is
        not a repository is refused now (Invalid), and nothing is stored. A remote's failure is
        told in one neutral sentence whatever the cause (unreachable, not found, refused
        credentials): telling them apart would let a caller map the controller's network through
        it; the cause goes to the controller's log. Who may register which URL or path is checked
        before this (controller.repos.commands). Pushes already on the branches are not built:
        the next one is.
        """
        org, tenant = owner or self.default_owner
        check_settings(settings)
        try:
            source = parse_source(settings.url, base)
        except GitError as exc:
            raise Invalid(str(exc)) from None
        staging = self.mirrors_dir / f"new-{secrets.token_hex(8)}.git"
        private_dir(self.mirrors_dir)
        mirror = Mirror(staging, source)
        try:
            heads = await in_thread(first_fetch, mirror, timeout=FETCH_TIMEOUT_S)
            branch = default_branch(heads)
            config, head_sha = "", ""
            if branch is not None:
                head_sha = heads[branch]
                data = await in_thread(mirror.read_file, heads[branch], PIPELINE_FILE)
                config = data.decode("utf-8", "replace") if data is not None else ""
        except GitError as exc:
            mirror.close()
            shutil.rmtree(staging, ignore_errors=True)
            if source.kind == "local":
                raise Invalid(f"cannot fetch {redact(source.url)}: {exc}") from None
            log.warning("registering %s: the first fetch failed: %s", redact(source.url), exc)
            raise Invalid(f"could not fetch {redact(source.url)}: check the URL and credentials") from None
        except BaseException:
            mirror.close()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        mirror.close()
        secret = settings.webhook_secret or secrets.token_urlsafe(24)
        try:
            repo = await repos.create_repository(
                org, tenant, settings, source.kind, source.url, secret, config, self.box, head_sha
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(self.mirror_path(repo.id))
        await repos.record_heads(org, tenant, repo.id, heads, [], "register")
        self._activate(repo, sync_now=False)
        return repo

    async def unregister(self, repo_id: UUID, tenant: UUID | None = None) -> bool:
        """Stop watching a repository of `tenant` (None: of any) and delete it, its pipeline, runs
        and mirror. False when there is no such repository (another tenant's is left alone)."""
        active = self._active.get(repo_id)
        if active is not None and tenant is not None and active.repo.tenant != tenant:
            return False
        if active is not None:
            del self._active[repo_id]
            self._by_pipeline.pop(active.repo.pipeline_id, None)
            for task in active.tasks:
                task.cancel()
            async with active.lock:
                active.mirror.close()
        deleted = await repos.delete_repository(tenant, repo_id)
        shutil.rmtree(self.mirror_path(repo_id), ignore_errors=True)
        return deleted

    def _activate(self, repo: RepoRow, sync_now: bool = True) -> None:
        mirror = Mirror(self.mirror_path(repo.id), RepoSource(repo.kind, repo.url))
        active = _Active(repo, mirror, asyncio.Lock(), [], asyncio.Event())
        self._active[repo.id] = active
        self._by_pipeline[repo.pipeline_id] = repo.id
        name = f"repo-{repo.name}"
        if sync_now:
            active.tasks.append(
                asyncio.create_task(self._guarded(lambda: self.sync(repo.id, "start")), name=f"{name}-sync")
            )
        if repo.kind == "local":
            active.tasks.append(asyncio.create_task(self._watch(active), name=f"{name}-watch"))
        active.tasks.append(asyncio.create_task(self._poll(active), name=f"{name}-poll"))
        active.tasks.append(asyncio.create_task(self._cron(active), name=f"{name}-cron"))

    # ------------------------------------------------------------------ change detection

    async def _watch(self, active: _Active) -> None:
        """Local repositories: a ref change is a sync, at once."""
        while True:
            # watchfiles sets its watch up in its own thread, so a commit in the first moments
            # could come before it: one catch-up sync once it surely exists covers that window.
            catch_up = asyncio.get_running_loop().call_later(
                WATCH_SETUP_S, lambda: self._spawn(lambda: self.sync(active.repo.id, "watch"))
            )
            try:
                async for _ in watch_refs(Path(active.repo.url)):
                    await self.sync(active.repo.id, "watch")
            except GitError as exc:
                await repos.set_status(
                    active.repo.id, "error", f"cannot watch {redact(active.repo.url)}: {exc}"
                )
                active.repo.status = "error"
            except Exception:
                log.exception("watching %s failed; retrying", redact(active.repo.url))
            finally:
                catch_up.cancel()
            await asyncio.sleep(RETRY_WATCH_S)

    async def _poll(self, active: _Active) -> None:
        """List the branch heads every poll interval; fetch only when one moved."""
        while True:
            await asyncio.sleep(active.repo.poll_interval_s)
            try:
                heads = await in_thread(
                    remote_branches, RepoSource(active.repo.kind, active.repo.url), timeout=FETCH_TIMEOUT_S
                )
            except GitError as exc:
                await self._fetch_failed(active, exc)
                continue
            except Exception:
                log.exception("polling %s failed", redact(active.repo.url))
                continue
            if heads != await repos.branch_heads(active.repo.id) or active.repo.status == "error":
                await self._guarded(lambda: self.sync(active.repo.id, "poll"))

    async def hook(self, repo_id: UUID, head: tuple[str, str] | None = None) -> None:
        """A webhook said the repository changed: sync in the background (the hook answers at once).

        `head` (branch, sha): what the hook said the branch now points at, fetched in one request.
        """
        self._spawn(lambda: self.sync(repo_id, "webhook", head))

    def _spawn(self, work: Callable[[], Awaitable[object]]) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def sync(self, repo_id: UUID, source: str, head: tuple[str, str] | None = None) -> list[RunState]:
        """Fetch, record new branch heads and their triggers, and turn pending triggers into runs.

        With `head` (a webhook's branch and new sha) only that commit is fetched, in one request,
        when the source allows it; otherwise (or if that fails) every branch is.
        """
        active = self._active.get(repo_id)
        if active is None:
            return []
        async with active.lock:
            try:
                heads = await self._fetch(active, head)
            except GitError as exc:
                await self._fetch_failed(active, exc)
                return []
            if active.repo.status != "ok":
                await repos.set_status(repo_id, "ok", "", fetched=True)
                active.repo.status, active.repo.status_message = "ok", ""
            known = await repos.branch_heads(repo_id)
            changed = {b: sha for b, sha in heads.items() if known.get(b) != sha}
            gone = [b for b in known if b not in heads]
            default = default_branch(heads)
            triggers: list[tuple[str, str]] = []
            for branch, sha in changed.items():
                if not active.repo.watches(branch, default):
                    continue
                if active.repo.run_each_commit:
                    commits = await in_thread(active.mirror.new_commits, known.get(branch), sha)
                    triggers.extend((branch, c) for c in reversed(commits))
                else:
                    triggers.append((branch, sha))
            if changed or triggers:
                repo = active.repo
                await repos.record_heads(repo.org, repo.tenant, repo_id, changed, triggers, source)
            await repos.forget_heads(repo_id, gone)
            runs = await self._run_pending(active)
            if changed:
                self._maintain_later(active)
            return runs

    async def _fetch(self, active: _Active, head: tuple[str, str] | None) -> dict[str, str]:
        if head is not None and active.repo.kind == "remote":
            try:
                return await in_thread(active.mirror.fetch_commit, *head, timeout=FETCH_TIMEOUT_S)
            except GitError as exc:
                log.info(
                    "repository %s: fetching %s alone failed (%s); fetching all",
                    active.repo.name,
                    head[1],
                    exc,
                )
        return await in_thread(active.mirror.fetch, timeout=FETCH_TIMEOUT_S)

    def _maintain_later(self, active: _Active) -> None:
        """Merge the mirror's packs a little later, not while agents fetch the commit just run.

        Maintenance holds the repository lock (it deletes packs), and the agents leased the new
        run's first stages ask the mirror for its commit within milliseconds: merging right now
        would make them wait. One pending maintenance per repository; failures are only logged.
        """
        if active.maintenance is not None and not active.maintenance.done():
            return

        async def maintain() -> None:
            await asyncio.sleep(MAINTAIN_DELAY_S)
            async with active.lock:
                await in_thread(active.mirror.maintain)

        active.maintenance = asyncio.create_task(self._guarded(maintain))
        active.tasks.append(active.maintenance)
        active.maintenance.add_done_callback(
            lambda task: active.tasks.remove(task) if task in active.tasks else None
        )

    async def _fetch_failed(self, active: _Active, exc: GitError) -> None:
        message = f"fetch failed: {exc}"
        if active.repo.status != "error" or active.repo.status_message != message:
            log.warning("repository %s: %s", active.repo.name, message)
            await repos.set_status(active.repo.id, "error", message)
            active.repo.status, active.repo.status_message = "error", message

    # ------------------------------------------------------------------ triggers -> runs

    async def trigger(
        self,
        repo_id: UUID,
        branch: str | None,
        sha: str | None,
        source: str = "api",
        env: Mapping[str, str] | None = None,
    ) -> RunState | None:
        """A deliberate run of a branch head or of one commit (API, CLI, cron), with extra `env`.

        Returns the run, or None when the commit has no `.buildit.kdl` (NotFound for an unknown
        repository, branch or commit). The trigger row is durable before the run is made, but
        `env` is not kept in it: a controller that dies in between runs the commit without it.
        """
        active = self._active.get(repo_id)
        if active is None:
            raise NotFound(f"repository {repo_id} not found")
        async with active.lock:
            try:
                heads = await in_thread(active.mirror.fetch, timeout=FETCH_TIMEOUT_S)
            except GitError as exc:
                await self._fetch_failed(active, exc)
                heads = await in_thread(active.mirror.branches)
            branch = branch or default_branch(heads)
            if branch is None:
                raise NotFound(f"repository {active.repo.name} has no branches yet: push a commit first")
            if sha:
                if not await in_thread(active.mirror.has_commit, sha):
                    raise NotFound(f"commit {sha} is not in repository {active.repo.name} (fetched just now)")
            else:
                if branch not in heads:
                    raise NotFound(
                        f"branch '{branch}' not found in repository {active.repo.name}; "
                        f"branches: {', '.join(sorted(heads)) or 'none'}"
                    )
                sha = heads[branch]
            repo = active.repo
            trigger_id = await repos.add_manual_trigger(repo.org, repo.tenant, repo_id, branch, sha, source)
            runs = await self._run_pending(active, only=trigger_id, env=env)
            return runs[0] if runs else None

    async def _run_pending(
        self, active: _Active, only: UUID | None = None, env: Mapping[str, str] | None = None
    ) -> list[RunState]:
        runs: list[RunState] = []
        for row in await repos.pending_triggers(active.repo.id):
            if only is not None and row["id"] != only:
                continue
            try:
                run = await self._run_commit(active, row["id"], row["branch"], row["sha"], row["source"], env)
            except Exception as exc:
                # Never leave a trigger pending after an unexpected failure: every later commit
                # of the repository would queue behind it and silently never run.
                log.exception("repository %s: commit %s could not be run", active.repo.name, row["sha"])
                reason = f"not run: internal error ({exc.__class__.__name__}); see the controller log"
                await repos.finish_trigger(row["id"], reason, None)
                continue
            if run is not None:
                runs.append(run)
        return runs

    async def _run_commit(
        self,
        active: _Active,
        trigger_id: UUID,
        branch: str,
        sha: str,
        source: str,
        env: Mapping[str, str] | None = None,
    ) -> RunState | None:
        repo = active.repo
        try:
            data, meta = await in_thread(pipeline_at, active.mirror, sha)
        except GitError as exc:
            await repos.finish_trigger(trigger_id, f"not run: {exc}", None)
            return None
        if data is None:
            await repos.finish_trigger(trigger_id, f"no {PIPELINE_FILE} at this commit", None)
            return None
        text = data.decode("utf-8", "replace")
        pipeline, _ = await parse(text, PIPELINE_FILE)
        heads = await repos.branch_heads(repo.id)
        if pipeline is not None and branch == default_branch(heads) and heads.get(branch) == sha:
            # The newest valid file of the default branch is what the pipeline shows (run or not).
            await repos.set_pipeline_config(repo.pipeline_id, text, sha)
            active.config_changed.set()
        if (
            pipeline is not None
            and source in ("watch", "poll", "webhook", "start")
            and not runs_on_push(pipeline, branch)
        ):
            await repos.finish_trigger(
                trigger_id, f"the pipeline's triggers do not include pushes to {branch}", None
            )
            return None
        await in_thread(active.mirror.pin, sha)
        try:
            run = await self.scheduler.trigger(
                repo.pipeline_id,
                branch=branch,
                sha=sha,
                message=meta.message,
                author=meta.author,
                trigger=source,
                source=text,
                workspace=WorkspaceSource(self.git_url(repo.id), sha, f"refs/heads/{branch}"),
                env=env,
            )
        except BuildItError as exc:
            await repos.finish_trigger(trigger_id, f"not run: {exc.message}", None)
            return None
        await repos.finish_trigger(trigger_id, f"run {run.number}", run.id)
        for listener in self.run_listeners:
            listener(repo, run, sha)
        return run

    async def newest_pipeline_file(
        self, repo_id: UUID, tenant: UUID | None = None
    ) -> tuple[str, str, str | None] | None:
        """(default branch, its head, the `.buildit.kdl` there or None) of a watched repository of
        `tenant`, from its mirror as last fetched; None when unknown or without any branch yet."""
        active = self._active.get(repo_id)
        if active is None or (tenant is not None and active.repo.tenant != tenant):
            return None
        async with active.lock:
            heads = await in_thread(active.mirror.branches)
            branch = default_branch(heads)
            if branch is None:
                return None
            data = await in_thread(active.mirror.read_file, heads[branch], PIPELINE_FILE)
        return branch, heads[branch], data.decode("utf-8", "replace") if data is not None else None

    # ------------------------------------------------------------------ cron

    async def _cron(self, active: _Active) -> None:
        """Run the pipeline's cron triggers, re-reading them whenever the pipeline file changes."""
        while True:
            active.config_changed.clear()
            schedule = await self._cron_schedule(active)
            if not schedule:
                await active.config_changed.wait()
                continue
            now = datetime.now(UTC)
            due, branch = min((next_cron(expr, now), branch) for expr, branch in schedule)
            wait = max((due - now).total_seconds(), 0.0)
            changed = asyncio.create_task(active.config_changed.wait())
            try:
                done, _ = await asyncio.wait({changed}, timeout=wait)
            finally:
                changed.cancel()
            if done:
                continue  # the file changed: recompute
            try:
                await self.trigger(active.repo.id, branch, None, source="cron")
            except (NotFound, GitError) as exc:
                log.warning("cron run of %s skipped: %s", active.repo.name, exc)
            except Exception:
                log.exception("cron run of %s failed", active.repo.name)

    async def _cron_schedule(self, active: _Active) -> list[tuple[str, str | None]]:
        async with active.lock:
            heads = await in_thread(active.mirror.branches)
            branch = default_branch(heads)
            if branch is None:
                return []
            data = await in_thread(active.mirror.read_file, heads[branch], PIPELINE_FILE)
        pipeline = (
            (await parse(data.decode("utf-8", "replace"), PIPELINE_FILE))[0] if data is not None else None
        )
        return cron_schedule(pipeline) if pipeline is not None else []

    async def _guarded(self, work: Callable[[], Awaitable[object]]) -> None:
        """Run `work()`, logging a failure. A factory, not a coroutine: a task cancelled before
        it started (a stop right after a start) would leave a coroutine never awaited."""
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("repository sync failed")
