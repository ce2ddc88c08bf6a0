"""Typed settings of one `buildit agent`, from command-line flags with environment fallbacks.

Every setting can come from a flag or from a `BUILDIT_*` variable, so the same agent image works with
a command line (a developer's shell) or with env only (a Kubernetes DaemonSet, a systemd unit). A flag
always wins over the environment. Everything is validated here, at start-up, with a one-line
`ValueError` naming the setting and how to fix it, so a mistyped value never surfaces later as a
confusing connection or scheduling problem.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast, get_args

from agent.contract.quantities import parse_cpu, parse_memory
from agent.contract.types import Resources
from agent.executors.base import DEFAULT_STAGE_LIMITS
from agent.executors.containment import CONTAINMENTS, Containment
from agent.executors.users import resolve_run_as
from agent.tls import TLS_SCHEME, read_ca_file

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_REPORT_WAIT_S",
    "DEFAULT_STATE_DIR",
    "ENV",
    "AgentSettings",
    "ExecutorChoice",
    "check_layout",
    "default_work_dir",
    "parse_controller",
    "parse_endpoint",
    "parse_labels",
]

ExecutorChoice = Literal["local", "docker", "kubernetes", "auto"]
_EXECUTOR_CHOICES: Final = get_args(ExecutorChoice)

DEFAULT_CAPACITY: Final = 2
DEFAULT_STATE_DIR: Final = Path(".buildit-agent")
DEFAULT_NETWORK: Final = "bridge"
#: Seconds a stopping agent waits for an unreachable controller to take its stages' results.
DEFAULT_REPORT_WAIT_S: Final = 60.0

#: Setting name -> environment variable consulted when the flag is not given.
ENV: Final[Mapping[str, str]] = {
    "controller": "BUILDIT_CONTROLLER",
    "registration_token": "BUILDIT_REGISTRATION_TOKEN",
    "name": "BUILDIT_AGENT_NAME",
    "labels": "BUILDIT_AGENT_LABELS",
    "capacity": "BUILDIT_AGENT_CAPACITY",
    "executor": "BUILDIT_AGENT_EXECUTOR",
    "state_dir": "BUILDIT_AGENT_STATE_DIR",
    "work_dir": "BUILDIT_AGENT_WORK_DIR",
    "containment": "BUILDIT_AGENT_CONTAINMENT",
    "run_as": "BUILDIT_AGENT_RUN_AS",
    "network": "BUILDIT_AGENT_NETWORK",
    "ca_file": "BUILDIT_CA_FILE",
    "report_wait": "BUILDIT_AGENT_REPORT_WAIT",
    "stage_cpus": "BUILDIT_AGENT_STAGE_CPUS",
    "stage_memory": "BUILDIT_AGENT_STAGE_MEMORY",
    "stage_pids": "BUILDIT_AGENT_STAGE_PIDS",
    "namespace": "BUILDIT_AGENT_NAMESPACE",
    "helper_image": "BUILDIT_AGENT_HELPER_IMAGE",
    "stage_service_account": "BUILDIT_AGENT_STAGE_SERVICE_ACCOUNT",
    # The downward API's spec.nodeName, as the Helm chart's DaemonSet sets it (no BUILDIT_ prefix).
    "node_name": "NODE_NAME",
}
DEFAULT_STAGE_SERVICE_ACCOUNT: Final = "buildit-stage"

# Label keys and values travel to the controller and are matched against stage labels; keep them to a
# conservative alphabet (Kubernetes-like) so they survive URLs, KDL and shell quoting unchanged.
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._/:+-]*")
_MAX_CAPACITY: Final = 1024


@dataclass(frozen=True)
class AgentSettings:
    """What one agent process needs to know; build it with `from_sources` to get validation."""

    #: The controller's gRPC address, HOST:PORT (without the grpcs:// of a TLS address).
    controller: str
    #: The controller's enrolment secret; needed only while the state dir holds no agent token.
    registration_token: str = ""
    name: str = field(default_factory=socket.gethostname)
    labels: dict[str, str] = field(default_factory=dict)
    #: How many stages run at the same time.
    capacity: int = DEFAULT_CAPACITY
    executor: ExecutorChoice = "auto"
    #: Holds agent.json (the agent token) and the lock that makes it one agent's: nothing else, and
    #: no stage is given a path into it.
    state_dir: Path = DEFAULT_STATE_DIR
    #: Docker network mode for stage containers.
    network: str = DEFAULT_NETWORK
    #: Talk to the controller over TLS (the address was given as grpcs://HOST:PORT).
    tls: bool = False
    #: The CA that signed the controller's certificate (PEM); None: the system's CAs.
    ca_file: Path | None = None
    #: Stage workspaces and the Git cache; None: `default_work_dir(state_dir)`.
    work_dir: Path | None = None
    #: How local stages are contained (agent.executors.containment).
    containment: Containment = "auto"
    #: The user local stages run as ("": the agent's own; see agent.executors.users).
    run_as: str = ""
    #: Once stopping: how long to wait for an unreachable controller to take the stages' results
    #: before keeping them in the state dir for the next start (agent.reporting).
    report_wait_s: float = DEFAULT_REPORT_WAIT_S
    #: Limits of a stage that does not set them in its `resources` node (container executors).
    stage_defaults: Resources = DEFAULT_STAGE_LIMITS
    #: The Kubernetes executor's settings (`kubernetes` set only for `--executor kubernetes`).
    kubernetes: KubernetesSettings | None = None

    @property
    def work_root(self) -> Path:
        """Where workspaces and the Git cache live: `work_dir`, or beside the state dir."""
        return self.work_dir if self.work_dir is not None else default_work_dir(self.state_dir)

    @classmethod
    def from_sources(
        cls,
        *,
        controller: str | None = None,
        registration_token: str | None = None,
        name: str | None = None,
        labels: str | None = None,
        capacity: int | str | None = None,
        executor: str | None = None,
        state_dir: str | Path | None = None,
        network: str | None = None,
        ca_file: str | Path | None = None,
        work_dir: str | Path | None = None,
        containment: str | None = None,
        run_as: str | None = None,
        report_wait: str | float | None = None,
        stage_cpus: str | None = None,
        stage_memory: str | None = None,
        stage_pids: str | int | None = None,
        namespace: str | None = None,
        helper_image: str | None = None,
        stage_service_account: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AgentSettings:
        """Settings from flag values (None = not given) falling back to `env` (default: os.environ).

        Raises ValueError with a one-line message for anything missing or malformed.
        """
        environ = os.environ if env is None else env

        def pick(setting: str, flag: object) -> str | None:
            if flag is not None:
                return str(flag)
            value = environ.get(ENV[setting])
            return value if value not in (None, "") else None

        raw_controller = pick("controller", controller)
        if raw_controller is None:
            raise ValueError(
                f"the controller address is required: pass --controller HOST:PORT or set "
                f"{ENV['controller']} ({TLS_SCHEME}HOST:PORT for TLS)"
            )
        address, tls = parse_endpoint(raw_controller)
        raw_ca = pick("ca_file", ca_file)
        if raw_ca is not None and not tls:
            raise ValueError(
                f"--ca-file ({ENV['ca_file']}) is for TLS: write the controller address as "
                f"{TLS_SCHEME}{address}"
            )
        if raw_ca is not None:
            read_ca_file(Path(raw_ca))
        raw_name = pick("name", name)
        if raw_name is not None and not raw_name.strip():
            raise ValueError("--name must not be blank")
        resolved_state = Path(pick("state_dir", state_dir) or DEFAULT_STATE_DIR)
        raw_work = pick("work_dir", work_dir)
        resolved_work = Path(raw_work) if raw_work is not None else None
        check_layout(resolved_state, resolved_work or default_work_dir(resolved_state))
        chosen = _parse_executor(pick("executor", executor))
        kube: KubernetesSettings | None = None
        if chosen == "kubernetes":
            kube = KubernetesSettings.parse(
                namespace=pick("namespace", namespace),
                node_name=pick("node_name", None),
                helper_image=pick("helper_image", helper_image),
                service_account=pick("stage_service_account", stage_service_account),
            )
        elif pick("namespace", namespace) is not None:
            raise ValueError(f"--namespace ({ENV['namespace']}) is for --executor kubernetes")
        return cls(
            controller=address,
            registration_token=pick("registration_token", registration_token) or "",
            name=raw_name.strip() if raw_name is not None else socket.gethostname(),
            labels=parse_labels(pick("labels", labels) or ""),
            capacity=_parse_capacity(pick("capacity", capacity)),
            executor=chosen,
            kubernetes=kube,
            state_dir=resolved_state,
            network=(pick("network", network) or DEFAULT_NETWORK).strip() or DEFAULT_NETWORK,
            tls=tls,
            ca_file=Path(raw_ca) if raw_ca is not None else None,
            work_dir=resolved_work,
            containment=_parse_containment(pick("containment", containment)),
            run_as=_parse_run_as(pick("run_as", run_as)),
            report_wait_s=_parse_report_wait(pick("report_wait", report_wait)),
            stage_defaults=parse_stage_defaults(
                pick("stage_cpus", stage_cpus),
                pick("stage_memory", stage_memory),
                pick("stage_pids", stage_pids),
            ),
        )


_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class KubernetesSettings:
    """Where the Kubernetes executor puts stage pods and what they run besides the stage."""

    namespace: str
    #: This agent's node (the downward API's spec.nodeName): stage pods are pinned to it.
    node_name: str
    #: The image of the checkout init container (BuildIt's own image: it has git).
    helper_image: str
    service_account: str = DEFAULT_STAGE_SERVICE_ACCOUNT

    @classmethod
    def parse(
        cls,
        *,
        namespace: str | None,
        node_name: str | None,
        helper_image: str | None,
        service_account: str | None,
    ) -> KubernetesSettings:
        """Validate the values; ValueError naming the setting and the fix.

        Why NODE_NAME is required: without it the executor cannot pin pods to its own node (the
        agent is one per node), and guessing from the host name is wrong on EKS and others.
        """
        if not node_name:
            raise ValueError(
                f"--executor kubernetes needs this agent's node name in {ENV['node_name']}: set it from "
                "the downward API (env valueFrom fieldRef spec.nodeName), as the Helm chart does"
            )
        if not namespace:
            raise ValueError(
                f"--executor kubernetes needs the namespace of its stage pods: pass --namespace NS or "
                f"set {ENV['namespace']}"
            )
        if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
            raise ValueError(f"namespace {namespace!r} is not a Kubernetes namespace name (a DNS-1123 label)")
        if not helper_image:
            raise ValueError(
                f"--executor kubernetes needs BuildIt's image for the checkout init container: pass "
                f"--helper-image IMAGE or set {ENV['helper_image']} (the image this agent runs from)"
            )
        account = (service_account or DEFAULT_STAGE_SERVICE_ACCOUNT).strip()
        if len(account) > 253 or not _DNS_LABEL.fullmatch(account.replace(".", "-")):
            raise ValueError(f"stage service account {account!r} is not a valid name")
        return cls(namespace, node_name.strip(), helper_image.strip(), account)


def default_work_dir(state_dir: Path) -> Path:
    """The work dir beside a state dir: `<state dir>-work` (`.buildit-agent` -> `.buildit-agent-work`).

    Beside, not inside: a stage's workspace must not have the agent's token a `../..` away.
    """
    absolute = Path(os.path.abspath(state_dir))
    return absolute.with_name(f"{absolute.name}-work")


def check_layout(state_dir: Path, work_dir: Path) -> None:
    """Refuse a work dir inside the state dir, the state dir inside the work dir, or the same dir.

    Stages are given paths under the work dir (their workspace, the Git cache their repository
    borrows from); the state dir holds the agent's token. Raises ValueError naming both.
    """
    state = Path(os.path.realpath(state_dir))
    work = Path(os.path.realpath(work_dir))
    if state == work or state.is_relative_to(work) or work.is_relative_to(state):
        raise ValueError(
            f"the work dir ({work_dir}) and the state dir ({state_dir}) must be separate directories, "
            "neither inside the other: stages are given paths in the work dir, the state dir holds the "
            "agent's token"
        )


def parse_endpoint(value: str) -> tuple[str, bool]:
    """`HOST:PORT` (plaintext) or `grpcs://HOST:PORT` (TLS) -> (HOST:PORT, tls).

    Why a scheme and not a flag: the address says everything about how to reach the controller, so
    the one string operators copy (from the controller's banner) cannot lose its TLS half. Plain
    HOST:PORT stays plaintext, as before, for a controller on the same machine.
    """
    text = value.strip()
    if text.lower().startswith(TLS_SCHEME):
        return parse_controller(text[len(TLS_SCHEME) :]), True
    return parse_controller(text), False


def parse_controller(value: str) -> str:
    """Validate a HOST:PORT address ("[::1]:9090" for IPv6); returns it stripped.

    gRPC would accept more (dns:///..., unix:...), but an agent is pointed at a controller by people
    copying an address, and a clear error for "controller:" or "http://x" beats a retry loop that can
    never connect.
    """
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or "/" in text:
        raise ValueError(
            f"controller address {value!r} must be HOST:PORT, e.g. ci.example.com:9090 "
            f"({TLS_SCHEME}ci.example.com:9090 for TLS)"
        )
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"controller address {value!r}: write an IPv6 host in brackets, e.g. [::1]:9090")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"controller address {value!r}: port must be a number from 1 to 65535")
    return text


def parse_labels(value: str) -> dict[str, str]:
    """Parse "k=v,k2=v2" into a dict; empty text means no labels.

    Whitespace around keys and values is ignored. Raises ValueError for an item without '=', an empty
    or malformed key, a malformed value, or a key given twice (which would silently drop one value).
    """
    labels: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, label_value = item.partition("=")
        key, label_value = key.strip(), label_value.strip()
        if not sep:
            raise ValueError(f"label {item!r} must be KEY=VALUE (labels are written k=v,k2=v2)")
        if not _LABEL_KEY.fullmatch(key):
            raise ValueError(
                f"label key {key!r} in {item!r} must start and end with a letter or digit and contain "
                "only letters, digits, '.', '_', '-' and '/'"
            )
        if not _LABEL_VALUE.fullmatch(label_value):
            raise ValueError(
                f"label value {label_value!r} of {key!r} may contain only letters, digits and . _ - / : +"
            )
        if key in labels:
            raise ValueError(f"label {key!r} is given twice")
        labels[key] = label_value
    return labels


def _parse_capacity(value: str | None) -> int:
    if value is None:
        return DEFAULT_CAPACITY
    try:
        capacity = int(value.strip())
    except ValueError:
        raise ValueError(f"capacity {value!r} must be a whole number of stages, e.g. 2") from None
    if not 1 <= capacity <= _MAX_CAPACITY:
        raise ValueError(f"capacity {capacity} must be between 1 and {_MAX_CAPACITY}")
    return capacity


def _parse_executor(value: str | None) -> ExecutorChoice:
    if value is None:
        return "auto"
    choice = value.strip().lower()
    if choice not in _EXECUTOR_CHOICES:
        raise ValueError(f"executor {value!r} must be one of {', '.join(_EXECUTOR_CHOICES)}")
    return cast(ExecutorChoice, choice)


def _parse_containment(value: str | None) -> Containment:
    if value is None:
        return "auto"
    choice = value.strip().lower()
    if choice not in CONTAINMENTS:
        raise ValueError(f"containment {value!r} must be one of {', '.join(CONTAINMENTS)}")
    return cast(Containment, choice)


def _parse_report_wait(value: str | None) -> float:
    if value is None:
        return DEFAULT_REPORT_WAIT_S
    try:
        seconds = float(value.strip())
    except ValueError:
        raise ValueError(f"report wait {value!r} must be a number of seconds, e.g. 60") from None
    if not 0 <= seconds <= 86400 or seconds != seconds:
        raise ValueError(f"report wait {value!r} must be between 0 and 86400 seconds")
    return seconds


def parse_stage_defaults(cpus: str | None, memory: str | None, pids: str | None) -> Resources:
    """The agent's `--stage-cpus/--stage-memory/--stage-pids` as limits; ValueError naming the flag.

    "0" (or nothing) for cpus and memory means no limit; pids defaults to `DEFAULT_STAGE_LIMITS`'
    and "0" turns that limit off.
    """
    cpu_millis = memory_bytes = 0
    if cpus is not None and cpus.strip() not in ("", "0"):
        parsed = parse_cpu(cpus.strip())
        if parsed is None or parsed <= 0:
            raise ValueError(
                f"--stage-cpus ({ENV['stage_cpus']}) {cpus!r} must be cores or millicores, e.g. 2 or 500m"
            )
        cpu_millis = parsed
    if memory is not None and memory.strip() not in ("", "0"):
        parsed = parse_memory(memory.strip())
        if parsed is None or parsed < 6 * 2**20:
            raise ValueError(
                f"--stage-memory ({ENV['stage_memory']}) {memory!r} must be a size of at least 6Mi, "
                "e.g. 4Gi or 512Mi"
            )
        memory_bytes = parsed
    count = DEFAULT_STAGE_LIMITS.pids
    if pids is not None:
        text = str(pids).strip()
        if not text.isdigit():
            raise ValueError(
                f"--stage-pids ({ENV['stage_pids']}) {pids!r} must be a whole number (0: no limit)"
            )
        count = int(text)
    return Resources(cpu_millis, memory_bytes, count)


def _parse_run_as(value: str | None) -> str:
    name = (value or "").strip()
    if name:
        resolve_run_as(name)  # ValueError: no such user, root, or the agent is not root
    return name
