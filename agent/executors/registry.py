"""Which executors this agent has: local always, docker when an engine answers (`build_executors`).

Kept apart from the executors themselves so that an agent on a host without Docker never imports
the docker SDK (`agent.executors.docker` is imported only once an engine is configured).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from agent.contract.types import Resources, StageSpec
from agent.executors.base import Executor, ExecutorError
from agent.executors.containment import Containment
from agent.executors.local import LocalExecutor
from agent.executors.users import resolve_run_as
from agent.settings import ExecutorChoice, KubernetesSettings

__all__ = ["Executors", "build_executors"]

log = logging.getLogger("agent")


@dataclass
class Executors:
    """The executors this agent has: always local, docker when an engine answered at start-up."""

    local: Executor
    docker: Executor | None = None
    #: Kubernetes runs image stages as pods; it stands in for docker (stages ask for "docker" by
    #: naming an image), so the controller's matching needs no new kind.
    kubernetes: Executor | None = None

    @property
    def advertised(self) -> tuple[str, ...]:
        """Executor kinds sent in RegisterRequest (decides which stages the controller leases us)."""
        return ("docker", "local") if self.docker is not None or self.kubernetes is not None else ("local",)

    def claim(self, owner: str) -> None:
        """Become agent `owner` (stable per state dir): clean up what its killed predecessor left.

        Blocking. Call it once the state dir is locked (no other live process is `owner`): it
        kills processes of that owner's earlier local stages and removes its containers.
        """
        if isinstance(self.local, LocalExecutor):
            killed = self.local.claim(owner)
            if killed:
                log.info("killed %d process(es) left by stages of an earlier run of this agent", killed)
        claim = getattr(self.docker, "claim", None)
        if claim is not None:
            claim(owner)

    def hide_credentials(self, *values: str) -> None:
        """The agent's credentials: no local stage inherits a variable holding one of them."""
        if isinstance(self.local, LocalExecutor):
            self.local.hide(*values)

    def self_contained(self, spec: StageSpec) -> bool:
        """Whether `spec`'s workspace needs its own copy of the Git objects (it may not read the cache)."""
        executor = self.for_spec(spec)
        return isinstance(executor, LocalExecutor) and executor.run_as is not None

    def for_spec(self, spec: StageSpec) -> Executor:
        """Docker for a stage with an image when available, else local (which ignores the image)."""
        if spec.image and self.kubernetes is not None:
            return self.kubernetes
        if spec.image and self.docker is not None:
            return self.docker
        return self.local

    async def close(self) -> None:
        """Release the executors' resources."""
        if self.docker is not None:
            await self.docker.close()
        if self.kubernetes is not None:
            await self.kubernetes.close()
        await self.local.close()


def _docker_configured() -> bool:
    """Cheap check before importing the docker SDK: is any engine named or present on this host?"""
    return bool(os.environ.get("DOCKER_HOST")) or os.path.exists("/var/run/docker.sock")


def build_executors(
    choice: ExecutorChoice,
    network: str = "bridge",
    containment: Containment = "auto",
    run_as: str = "",
    stage_defaults: Resources | None = None,
    kubernetes: KubernetesSettings | None = None,
) -> Executors:
    """The executors for `--executor`: local only, docker + local (required), or docker if it works.

    Blocking (it pings the Docker engine): call it before the event loop starts. Raises ExecutorError
    when docker is required but unusable. In "auto" mode the docker SDK is not even imported on a
    host with no engine configured, which keeps such agents small.
    """
    try:
        user = resolve_run_as(run_as) if run_as else None
    except ValueError as exc:
        raise ExecutorError(str(exc)) from None
    local = LocalExecutor(containment=containment, run_as=user)
    if choice == "local":
        log.info("executors: local")
        return Executors(local)
    if choice == "kubernetes":
        if kubernetes is None:
            raise ExecutorError("--executor kubernetes needs its settings (namespace, node name)")
        return Executors(local, kubernetes=_kubernetes(kubernetes, stage_defaults))
    if choice == "auto" and not _docker_configured():
        log.info("executors: local (no Docker engine configured: DOCKER_HOST unset, no /var/run/docker.sock)")
        return Executors(local)
    try:
        from agent.executors.docker import DockerExecutor

        docker = DockerExecutor.connect(network_mode=network, defaults=stage_defaults)
    except (ExecutorError, ImportError) as exc:
        if choice == "docker":
            raise ExecutorError(str(exc)) from None
        log.info("executors: local (Docker unusable: %s)", exc)
        return Executors(local)
    log.info("executors: docker (network %s) and local", network)
    return Executors(local, docker)


def _kubernetes(settings: KubernetesSettings, stage_defaults: Resources | None) -> Executor:
    """The Kubernetes executor, connected (imports the client only here). Blocking."""
    from agent.executors.kubepod import PodSettings
    from agent.executors.kubernetes import KubernetesExecutor

    pod_settings = PodSettings(
        node_name=settings.node_name,
        namespace=settings.namespace,
        helper_image=settings.helper_image,
        service_account=settings.service_account,
        defaults=stage_defaults if stage_defaults is not None else Resources(),
    )
    executor = KubernetesExecutor.connect(pod_settings)
    log.info(
        "executors: kubernetes (namespace %s, node %s) and local", settings.namespace, settings.node_name
    )
    return executor
