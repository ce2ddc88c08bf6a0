"""The table registry, the Piccolo app "buildit": every BuildIt table, and where their migrations live.

Piccolo's auto migrations diff `table_classes` against the migration files in
`controller/db/migrations/`, so a new table must be listed here (and its module must be a
`controller/<domain>/tables.py`). It lives above the storage layer (`controller.db`), which finds
it by name through `controller.db.piccolo_conf`'s app registry and so imports no domain.
"""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig

from controller.agents.tables import Agent
from controller.artifacts.tables import Artifact
from controller.audit.tables import AuditEvent
from controller.auth.tables import AgentToken, ApiKey, WebSession
from controller.db.binding import APP_NAME
from controller.notify.tables import Notification, NotificationDelivery
from controller.orgs.tables import Membership, Organization, Team, TeamMember, Tenant, TenantGrant, User
from controller.pipelines.tables import Pipeline
from controller.repos.tables import BranchHead, CommitTrigger, Repository
from controller.runs.tables import Run, StageRun
from controller.secrets.tables import Secret, SecretKeyCheck

MIGRATIONS_DIR = Path(__file__).resolve().parent / "db" / "migrations"

APP_CONFIG = AppConfig(
    app_name=APP_NAME,
    migrations_folder_path=str(MIGRATIONS_DIR),
    table_classes=[
        Organization,
        Tenant,
        Repository,
        BranchHead,
        Pipeline,
        Agent,
        Run,
        StageRun,
        CommitTrigger,
        Artifact,
        User,
        Membership,
        Team,
        TeamMember,
        TenantGrant,
        WebSession,
        ApiKey,
        AgentToken,
        AuditEvent,
        Secret,
        SecretKeyCheck,
        Notification,
        NotificationDelivery,
    ],
)
