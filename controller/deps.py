"""What the controller's doors are given: its long-lived parts, built once per process.

`Deps` is created by the composition root (`controller.server`, or a test) and handed to the
Litestar app, which provides it to every handler through dependency injection (`deps: Deps`, or
`commands: RunCommands` for the run operations), and to the gRPC servicers' constructors.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING
from uuid import UUID

from controller.agents.services import AgentRegistry
from controller.auth.authenticate import Authenticator
from controller.auth.caller import Caller
from controller.auth.oidc import OidcClient
from controller.auth.throttle import LoginThrottle
from controller.events import EventBus
from controller.runs.commands import RunCommands
from controller.scheduling.logs import LogStore
from controller.scheduling.scheduler import Scheduler

if TYPE_CHECKING:
    from controller.artifacts.store import ArtifactStore
    from controller.secrets.crypto import SecretBox
    from controller.triggers.trigger_engine import TriggerEngine


class Deps:
    """Everything request handlers need.

    A plain class on purpose: Litestar validates injected values against their annotation with
    msgspec, which would rebuild a dataclass (a new instance per request); a plain class is only
    checked with isinstance.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        registry: AgentRegistry,
        logs: LogStore,
        events: EventBus,
        org: UUID,
        tenant: UUID,
        triggers: TriggerEngine | None = None,
        artifacts: ArtifactStore | None = None,
        secret_box: SecretBox | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.registry = registry
        self.logs = logs
        self.events = events
        self.org = org
        self.tenant = tenant
        #: Watched repositories (None in tests that need none).
        self.triggers = triggers
        #: Artifact content under the data dir (None in tests that need none).
        self.artifacts = artifacts
        #: Seals secrets under the master key (None in tests that store none).
        self.secret_box = secret_box
        #: Finds the principal of an API key or session (its caches live as long as the process).
        self.authenticator = Authenticator()
        #: Back-off of failed sign-ins, per user name and per address.
        self.throttle = LoginThrottle()
        #: Mark session cookies `Secure` (the public URL is https) even when TLS ends at a proxy.
        self.secure_cookies = False
        #: The controller's public URL (OIDC redirect URL); "" = as the request came in.
        self.public_url = ""
        #: Hosts tenant maintainers may register repositories on (BUILDIT_REPO_HOSTS; empty: any
        #: host that is not an internal address). See controller.repos.commands.
        self.repo_hosts: tuple[str, ...] = ()
        #: Sign-in with an OpenID provider, when BUILDIT_OIDC_ISSUER is set.
        self.oidc: OidcClient | None = None
        #: The run operations every door adapts, for the default tenant (`buildit up`'s own use).
        self.runs = RunCommands(scheduler, tenant, triggers)

    def scoped(self, caller: Caller) -> Deps:
        """The same parts acting for one caller in its tenant: handlers read `deps.tenant` and
        `deps.org`, so scoping them here scopes every query a door makes; the run operations
        record the caller in the audit log."""
        view = copy.copy(self)
        view.org = caller.org
        view.tenant = caller.tenant
        view.runs = RunCommands(self.scheduler, caller.tenant, self.triggers, caller)
        return view
