"""Run stages as Pods on the agent's own Kubernetes node: the only module that imports `kubernetes`.

The agent runs as a DaemonSet pod; each stage attempt becomes one Pod (`agent.executors.kubepod`)
pinned to the agent's node. The loop, and why (evidence in /work/shared/research/k8s.md §1.2, §1.4):

- **Create**: the per-pod Secret, then the Pod, then the Secret's ownerReference to the Pod (it is
  then garbage-collected with it). The pod's name is deterministic, so a `409 AlreadyExists` on
  create means an earlier try of this very attempt made it: the executor adopts it (after checking
  its lease label) instead of running the stage twice. Writes honour `429` and `Retry-After` (the
  client retries only GETs by itself) and retry 5xx a few times.
- **Wait**: ONE watch per executor on its own node's pods (label `buildit.io/managed=true`, field
  `spec.nodeName=<node>`): list, then watch from the list's resourceVersion with bookmarks, relist
  on `410 Gone`. Every run subscribes to its pod's events; there is no per-pod polling. A pod the
  scheduler has not placed is not on the node yet (the watch cannot see it): once per pending
  timeout the run GETs it, so an unschedulable pod is reported with its conditions.
- **Verdict**: `agent.executors.kubestatus.classify` on every event. The exit code comes from the
  container status, never from the log.
- **Logs**: `pods/log` of the stage container, followed as raw bytes (`_preload_content=False`,
  `resp.stream()`; `Watch.stream`/`iter_resp_lines` drop a final line without a newline). The
  reader counts the bytes it delivered; when the stream drops (or ends while the container still
  runs) it reconnects, reads the log again from its start and skips the bytes already delivered: no
  loss, no duplication. The limit: the API serves only the kubelet's current log file, so a
  reconnect after a log rotation (kubelet `containerLogMaxSize`, default 10Mi) cannot line up and the
  reader then says so in the log instead of guessing. After termination the reader drains what is
  left before the pod is deleted. Lines and the script's command headers are handled as in the Docker
  executor (`agent.executors.script.add_line`).
- **Cancel and timeout**: `spec.activeDeadlineSeconds` is patched to 1: the kubelet stops the pod,
  which (and its log) survives until the agent deletes it; the log is drained, then the pod is
  deleted. The result is CANCELLED / TIMED_OUT as for the other executors.
- **Cleanup**: the pod is deleted with `propagationPolicy=Background` when the run ends (the Secret
  goes with it; deleted explicitly when its owner patch failed).
- **Infrastructure verdicts** (eviction, disruption, unschedulable, deleted by someone else) return
  ERROR with `infrastructure=True` and a message starting "infrastructure:". The agent does not act on
  the flag yet: today such an ERROR spends one of the stage's retries (see README, Kubernetes).
- **Artifacts**: not passed yet. A stage with `needs` or `artifacts` gets ERROR saying so, rather
  than running without its inputs or losing its outputs.

The client is blocking: API calls run in worker threads; the watch and each log reader have a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from agent.contract.types import ExecutionResult, StageSpec, StageStatus
from agent.executors.base import (
    NO_CONTEXT,
    ExecutorError,
    OutputCallback,
    StageContext,
    announce,
    piece_callback,
)
from agent.executors.kubecheck import check_manifest
from agent.executors.kubepod import (
    LABEL_PREFIX,
    STAGE_CONTAINER,
    Checkout,
    ManifestError,
    PodSettings,
    owner_patch,
    pod_manifest,
    secret_manifest,
)
from agent.executors.kubestatus import (
    DEFAULT_PENDING_TIMEOUT_S,
    DEFAULT_WAITING_GRACE_S,
    PodOutcome,
    PodVerdict,
    classify,
)
from agent.executors.lines import LineSplitter
from agent.executors.script import HEADER, LAST, LINE, Output, add_line, add_piece

__all__ = ["CHECKOUT_SCRIPT", "KubernetesExecutor", "load_api_client"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRIED_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_WRITE_ATTEMPTS: Final = 6
_WATCH_TIMEOUT_S: Final = 300
_CONNECT_TIMEOUT_S: Final = 10.0
_READ_TIMEOUT_S: Final = 60.0
_LOG_SILENCE_S: Final = 300.0
_CHUNK: Final = 64 * 1024
_MAX_MESSAGE: Final = 600

#: The checkout init container's script (BuildIt's helper image has git and sh). The token is read
#: from the per-pod Secret's file and handed to git through GIT_CONFIG_* variables: never argv.
CHECKOUT_SCRIPT: Final = """set -eu
GIT_CONFIG_COUNT=1
GIT_CONFIG_KEY_0=http.extraHeader
GIT_CONFIG_VALUE_0="Authorization: Bearer $(cat "$BUILDIT_CREDENTIALS/token")"
export GIT_CONFIG_COUNT GIT_CONFIG_KEY_0 GIT_CONFIG_VALUE_0
git init -q .
git fetch -q --depth=1 "$BUILDIT_REPO_URL" "$BUILDIT_COMMIT" ||
  git fetch -q "$BUILDIT_REPO_URL" "$BUILDIT_REF"
git -c advice.detachedHead=false checkout -q --detach "$BUILDIT_COMMIT"
"""


def load_api_client() -> k8s.ApiClient:
    """The API client for where the agent runs: in-cluster (a pod: KUBERNETES_SERVICE_HOST is set),
    else the kubeconfig (KUBECONFIG or ~/.kube/config). Raises ExecutorError saying which failed."""
    configuration = k8s.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        where = "in-cluster service account" if os.environ.get("KUBERNETES_SERVICE_HOST") else "kubeconfig"
        raise ExecutorError(
            f"cannot configure the Kubernetes client from the {where}: {exc}; run the agent in a pod "
            "with a service account, or set KUBECONFIG"
        ) from None
    return k8s.ApiClient(configuration)


def _reason(exc: BaseException) -> str:
    """A short reason for an API error: the Status message, not the client's wrapping."""
    if isinstance(exc, ApiException):
        try:
            body = json.loads(exc.body or "{}")
        except ValueError:
            body = {}
        message = body.get("message") if isinstance(body, dict) else None
        return f"{exc.status} {message or exc.reason}"
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _retry_after(exc: ApiException, attempt: int) -> float:
    """Seconds to wait before retrying: the server's Retry-After, else a short backoff."""
    header = str(exc.headers.get("Retry-After") or "") if exc.headers is not None else ""
    try:
        return max(0.0, float(header)) if header else min(8.0, 0.25 * (1 << attempt))
    except ValueError:
        return min(8.0, 0.25 * (1 << attempt))


def _with_retries(call: Callable[[], T]) -> T:
    """Run one API write, retrying 429 (after its Retry-After) and 5xx. Blocking.

    Why here and not the client's: `client_go_retries` covers only GET/HEAD in the v37 client.
    Safe for creates because names are deterministic (a retried create meets 409 and adopts).
    """
    for attempt in range(_WRITE_ATTEMPTS):
        try:
            return call()
        except ApiException as exc:
            if exc.status not in _RETRIED_STATUS or attempt == _WRITE_ATTEMPTS - 1:
                raise
            time.sleep(_retry_after(exc, attempt))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- the node's pod watch


Listener = Callable[[dict[str, Any], bool], None]


class _PodWatch:
    """The executor's one watch on its node's stage pods; runs in a thread, feeds subscribers.

    List, then watch from the list's resourceVersion (bookmarks keep it fresh); on 410 Gone (or any
    broken stream) list again. A pod that disappears between lists is reported deleted.
    """

    def __init__(self, core: Any, namespace: str, node: str) -> None:
        self._core = core
        self._namespace = namespace
        self._label = f"{LABEL_PREFIX}managed=true"
        self._field = f"spec.nodeName={node}"
        self._lock = threading.Lock()
        self._pods: dict[str, dict[str, Any]] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._stopped = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        #: How many LISTs it made (1 + relists): visible to tests and logs.
        self.lists = 0

    def start(self) -> None:
        """Start the watch thread once (idempotent)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="buildit-kube-watch", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the watch (closes its connection so a blocked read returns)."""
        self._stopped.set()
        _interrupt(self._response)

    def subscribe(self, name: str, listener: Listener) -> dict[str, Any] | None:
        """Call `listener(pod, deleted)` for each event of pod `name`; returns the pod as last seen."""
        with self._lock:
            self._listeners.setdefault(name, []).append(listener)
            return self._pods.get(name)

    def unsubscribe(self, name: str, listener: Listener) -> None:
        """Stop telling `listener` about pod `name`."""
        with self._lock:
            listeners = self._listeners.get(name, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._listeners.pop(name, None)

    def _emit(self, pod: dict[str, Any], deleted: bool) -> None:
        name = str((pod.get("metadata") or {}).get("name", ""))
        with self._lock:
            if deleted:
                self._pods.pop(name, None)
            else:
                self._pods[name] = pod
            listeners = list(self._listeners.get(name, ()))
        for listener in listeners:
            listener(pod, deleted)

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                version = self._list()
                failures = 0
                while not self._stopped.is_set():
                    version = self._watch(version)
            except _Expired:
                log.info("pod watch: resourceVersion expired (410 Gone); listing again")
            except Exception as exc:  # any broken list or stream: list again after a pause
                if self._stopped.is_set():
                    return
                failures += 1
                log.warning("pod watch failed (%s); listing again", _reason(exc))
                self._stopped.wait(min(10.0, 0.5 * failures))

    def _list(self) -> str:
        response = self._core.list_namespaced_pod(
            self._namespace,
            label_selector=self._label,
            field_selector=self._field,
            _preload_content=False,
            _request_timeout=(_CONNECT_TIMEOUT_S, _READ_TIMEOUT_S),
        )
        body = json.loads(response.data)
        self.lists += 1
        items = {str(p["metadata"]["name"]): p for p in body.get("items") or []}
        with self._lock:
            gone = [p for name, p in self._pods.items() if name not in items]
        for pod in gone:
            self._emit(pod, True)
        for pod in items.values():
            self._emit(pod, False)
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        """One watch request from `version`; returns the version to continue from."""
        response = self._core.list_namespaced_pod(
            self._namespace,
            label_selector=self._label,
            field_selector=self._field,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=_WATCH_TIMEOUT_S,
            _preload_content=False,
            _request_timeout=(_CONNECT_TIMEOUT_S, _WATCH_TIMEOUT_S + 30),
        )
        self._response = response
        try:
            for event in _json_lines(response.stream(_CHUNK, decode_content=True)):
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Expired()
                    raise RuntimeError(f"watch error: {obj.get('message') or obj}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._emit(obj, kind == "DELETED")
        finally:
            self._response = None
            response.release_conn()
        return version


def _interrupt(response: Any) -> None:
    """Unblock a thread reading `response`: shut its socket down (closing the response from another
    thread blocks on the reader's lock; the kubernetes client's `Watch.stop` does the same)."""
    connection = getattr(response, "connection", None) if response is not None else None
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def _json_lines(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


# --------------------------------------------------------------------------- one stage's log


class _LogReader:
    """Follows the stage container's log in a thread; delivers each byte exactly once.

    `delivered` counts the bytes handed on. A stream that drops (or ends while the container still
    runs) is reopened; the new stream starts at the log's beginning and its first `delivered` bytes
    are skipped. `terminated` is set by the run once the container's terminated state is known: a
    stream that ends cleanly after that has delivered everything.
    """

    def __init__(
        self,
        core: Any,
        namespace: str,
        pod: str,
        feed: Callable[[bytes], None],
    ) -> None:
        self._core = core
        self._namespace = namespace
        self._pod = pod
        self._feed = feed
        self.delivered = 0
        self.reconnects = 0
        self.terminated = threading.Event()
        self.stopped = threading.Event()
        self.done = threading.Event()
        self._response: Any = None

    def stop(self) -> None:
        """Stop reading (the run is over): closes the connection so a blocked read returns."""
        self.stopped.set()
        _interrupt(self._response)

    def run(self) -> None:
        """Thread body: read until the container terminated and a stream ended cleanly after that."""
        try:
            while not self.stopped.is_set():
                terminated_before = self.terminated.is_set()
                clean = self._read_once()
                if self.stopped.is_set() or (clean and terminated_before):
                    return
                if clean and self.terminated.wait(0.5):
                    continue  # it ended because the container did: one more read drains the rest
                self.reconnects += 1
                self.stopped.wait(min(2.0, 0.1 * self.reconnects))
        finally:
            self.done.set()

    def _read_once(self) -> bool:
        """One log request; True when its stream ended cleanly (False: dropped or refused)."""
        try:
            response = self._core.read_namespaced_pod_log(
                self._pod,
                self._namespace,
                container=STAGE_CONTAINER,
                follow=True,
                _preload_content=False,
                # A stage silent for longer than this reads as a dropped stream: reconnect.
                _request_timeout=(_CONNECT_TIMEOUT_S, _LOG_SILENCE_S),
            )
        except ApiException as exc:
            if exc.status == 404:
                self.stopped.set()  # the pod is gone: nothing more to read
            else:
                log.debug("log of %s not readable yet: %s", self._pod, _reason(exc))
            return False
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.debug("log of %s: %s", self._pod, exc)
            return False
        self._response = response
        skip = self.delivered
        try:
            for chunk in response.stream(_CHUNK, decode_content=False):
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                self.delivered += len(chunk)
                self._feed(chunk)
            if skip:
                # The log is shorter than what was delivered: the kubelet rotated it.
                self._feed(
                    f"\nbuildit: the log of pod {self._pod} was rotated by the kubelet while the "
                    "agent reconnected; output from that moment may be missing\n".encode()
                )
                self.delivered = 0
            return True
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.info(
                "log stream of %s dropped after %d bytes (%s); reconnecting", self._pod, self.delivered, exc
            )
            return False
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()


# --------------------------------------------------------------------------- the executor


@dataclass
class _Run:
    """What one stage run tracks while it waits."""

    name: str
    verdict: PodVerdict
    seen: bool = False
    deleted: bool = False
    pod: dict[str, Any] | None = None


class KubernetesExecutor:
    """Runs each stage that names an image as a Pod on the agent's node (see the module docstring)."""

    name = "kubernetes"
    applies_resources = True

    def __init__(
        self,
        settings: PodSettings,
        api_client: k8s.ApiClient,
        *,
        pending_timeout_s: float = DEFAULT_PENDING_TIMEOUT_S,
        waiting_grace_s: float = DEFAULT_WAITING_GRACE_S,
        stop_wait_s: float | None = None,
    ) -> None:
        """`stop_wait_s`: how long a cancelled pod may take to stop (default: its grace period + 30s)."""
        self.settings = settings
        self._api = api_client
        # Any: with `_preload_content=False` the methods return the raw urllib3 response, which
        # the client's annotations do not say; bodies are plain dicts (what `classify` reads).
        self._core: Any = k8s.CoreV1Api(api_client)
        self._watch = _PodWatch(self._core, settings.namespace, settings.node_name)
        self.pending_timeout_s = pending_timeout_s
        self.waiting_grace_s = waiting_grace_s
        self.stop_wait_s = stop_wait_s if stop_wait_s is not None else settings.termination_grace_s + 30.0

    @classmethod
    def connect(cls, settings: PodSettings, api_client: k8s.ApiClient | None = None) -> KubernetesExecutor:
        """Configure the client (in-cluster or kubeconfig) and check that the namespace's pods can be
        listed, so an agent without access refuses to start instead of failing every stage."""
        api = api_client if api_client is not None else load_api_client()
        executor = cls(settings, api)
        try:
            executor._core.list_namespaced_pod(
                settings.namespace,
                label_selector=f"{LABEL_PREFIX}managed=true",
                limit=1,
                _preload_content=False,
                _request_timeout=(_CONNECT_TIMEOUT_S, _READ_TIMEOUT_S),
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            api.close()  # type: ignore[no-untyped-call]
            raise ExecutorError(
                f"cannot list pods in namespace '{settings.namespace}' of the Kubernetes API at "
                f"{api.configuration.host}: {_reason(exc)}; check the agent's Role and --namespace"
            ) from None
        executor._watch.start()
        return executor

    @property
    def watch_lists(self) -> int:
        """How many times the node watch listed pods (1, plus one per relist)."""
        return self._watch.lists

    def can_run(self, spec: StageSpec) -> bool:
        """Pods need an image."""
        return bool(spec.image)

    async def run(
        self,
        spec: StageSpec,
        workspace: Path,
        on_output: OutputCallback,
        cancel: asyncio.Event,
        context: StageContext = NO_CONTEXT,
    ) -> ExecutionResult:
        """Run `spec` as one Pod; see `Executor.run` and the module docstring. `workspace` is unused:
        the pod's workspace is an emptyDir filled by its checkout init container."""
        if spec.needs or spec.artifacts:
            return _error(
                "the kubernetes executor cannot pass artifacts yet: this stage "
                + ("needs artifacts" if spec.needs else "declares artifacts")
                + "; run it on a docker or local agent"
            )
        if cancel.is_set():
            return ExecutionResult(StageStatus.CANCELLED, message="cancelled before start")
        try:
            pod, secret = self._manifests(spec, context)
        except ManifestError as exc:
            return _error(str(exc))
        problems = check_manifest(pod) + check_manifest(secret)
        if problems:
            return _error(f"stage '{spec.name}' cannot become a valid pod: {'; '.join(problems)}")
        self._watch.start()
        loop = asyncio.get_running_loop()
        name = str(pod["metadata"]["name"])
        updates: asyncio.Queue[tuple[dict[str, Any], bool]] = asyncio.Queue()

        def listener(obj: dict[str, Any], deleted: bool) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(updates.put_nowait, (obj, deleted))

        reader: _LogReader | None = None
        secret_owned = False
        created = False
        current = 0
        total = len(spec.commands)
        piece = piece_callback(on_output)
        delivering = True

        def deliver(items: Output) -> None:
            nonlocal current
            if not delivering:
                return
            for text, kind in items:
                if kind == HEADER:
                    if text == str(current + 1) and current < total:
                        current += 1
                        announce(on_output, current, total, spec.commands[current - 1])
                    else:
                        on_output(text)
                elif kind == LINE or piece is None:
                    on_output(text)
                else:
                    piece(text, kind == LAST)

        batch: Output = []
        splitter = LineSplitter(
            lambda text: add_line(batch, text), lambda text, last: add_piece(batch, text, last)
        )

        def feed(chunk: bytes) -> None:
            splitter.feed(chunk)
            if batch:
                items = list(batch)
                batch.clear()
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(deliver, items)

        cached = self._watch.subscribe(name, listener)
        if cached is not None:
            updates.put_nowait((cached, False))
        deadline = loop.time() + spec.timeout_s
        try:
            try:
                secret_owned = await asyncio.to_thread(self._create, pod, secret, context)
                created = True
            except _CreateError as exc:
                return _error(str(exc))
            state = _Run(name, PodVerdict(PodOutcome.PENDING))
            reader = _LogReader(self._core, self.settings.namespace, name, feed)
            reader_thread = threading.Thread(target=reader.run, name=f"buildit-kube-log-{name}", daemon=True)

            def follow() -> None:
                # The log can be read once the container has run: follow it from then on.
                if not reader_thread.is_alive() and not reader.done.is_set() and reader_thread.ident is None:
                    reader_thread.start()

            cancel_wait = asyncio.ensure_future(cancel.wait())
            try:
                verdict = await self._wait(state, updates, cancel_wait, deadline, loop, follow)
            finally:
                cancel_wait.cancel()
            if verdict is None:
                # Cancelled or out of time: stop the pod, keep its log.
                await asyncio.to_thread(self._stop_pod, name)
                if await self._until_stopped(state, updates, loop.time() + self.stop_wait_s):
                    reader.terminated.set()
                if reader_thread.ident is not None:
                    await _wait_event(reader.done, self.stop_wait_s)
                self._flush(splitter, batch, deliver)
                if cancel.is_set():
                    return ExecutionResult(StageStatus.CANCELLED, message="cancelled", command=current)
                return ExecutionResult(
                    StageStatus.TIMED_OUT, message=f"timed out after {spec.timeout_s:g}s", command=current
                )
            if reader_thread.ident is not None:
                reader.terminated.set()
                await _wait_event(reader.done, self.stop_wait_s)
            self._flush(splitter, batch, deliver)
            return self._result(verdict, current)
        finally:
            delivering = False
            self._watch.unsubscribe(name, listener)
            if reader is not None:
                reader.stop()
            if created:
                await asyncio.to_thread(self._delete, name, secret_owned)

    # ------------------------------------------------------------------ steps

    def _manifests(self, spec: StageSpec, context: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
        checkout: Checkout | None = None
        if spec.source is not None:
            credentials = {"token": context.source_token} if context.source_token else {}
            checkout = Checkout(command=("/bin/sh", "-c", CHECKOUT_SCRIPT), credentials=credentials)
        lease = context.lease_id or f"run-{uuid.uuid4().hex}"
        pod = pod_manifest(
            spec,
            lease_id=lease,
            attempt=context.attempt,
            pipeline=context.run_id,
            settings=self.settings,
            checkout=checkout,
        )
        return pod, secret_manifest(pod, spec, checkout)

    def _create(self, pod: dict[str, Any], secret: dict[str, Any], context: StageContext) -> bool:
        """Secret, then Pod (adopting one an earlier try made), then the Secret's owner. Blocking.
        Returns whether the Secret is owned by the Pod (else it must be deleted explicitly)."""
        namespace = self.settings.namespace
        name = str(pod["metadata"]["name"])
        try:
            _with_retries(
                lambda: self._core.create_namespaced_secret(namespace, body=secret, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status != 409:
                raise _CreateError(f"could not create the stage's secret {name}: {_reason(exc)}") from None
        try:
            response = _with_retries(
                lambda: self._core.create_namespaced_pod(namespace, body=pod, _preload_content=False)
            )
            created = json.loads(response.data)
        except ApiException as exc:
            if exc.status != 409:
                self._delete_secret(name)
                raise _CreateError(f"could not create the stage's pod {name}: {_reason(exc)}") from None
            created = self._adopt(name, pod)
        uid = str(created["metadata"]["uid"])
        try:
            _with_retries(
                lambda: self._core.patch_namespaced_secret(
                    name, namespace, body=owner_patch(name, uid), _preload_content=False
                )
            )
        except ApiException as exc:
            log.warning(
                "could not make pod %s own its secret (%s); it is deleted explicitly", name, _reason(exc)
            )
            return False
        return True

    def _adopt(self, name: str, pod: Mapping[str, Any]) -> dict[str, Any]:
        """The pod already exists (a create that succeeded but whose answer was lost): take it over
        if it is this lease's, else refuse (a name clash must never hijack another stage's pod)."""
        response = self._core.read_namespaced_pod(name, self.settings.namespace, _preload_content=False)
        existing: dict[str, Any] = json.loads(response.data)
        label = f"{LABEL_PREFIX}lease"
        theirs = (existing["metadata"].get("labels") or {}).get(label)
        ours = pod["metadata"]["labels"][label]
        if theirs != ours:
            raise _CreateError(f"pod {name} already exists and belongs to another lease ({theirs})")
        log.info("pod %s already existed (an earlier create went through): adopting it", name)
        return existing

    async def _wait(
        self,
        state: _Run,
        updates: asyncio.Queue[tuple[dict[str, Any], bool]],
        cancel_wait: asyncio.Future[Any],
        deadline: float,
        loop: asyncio.AbstractEventLoop,
        follow: Callable[[], None],
    ) -> PodVerdict | None:
        """Wait for a final verdict (None: cancelled or out of time). Re-classifies the last seen pod
        every second (a pending timeout or pull grace expires without any event)."""
        last: dict[str, Any] | None = None
        created_at = loop.time()
        fetched_at = created_at
        while True:
            if cancel_wait.done() or loop.time() >= deadline:
                return None
            timeout = max(0.0, min(1.0, deadline - loop.time()))
            getter = asyncio.ensure_future(updates.get())
            await asyncio.wait({getter, cancel_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                last, deleted = getter.result()
                state.seen = True
                state.deleted = state.deleted or deleted
            else:
                getter.cancel()
            if last is None and loop.time() - fetched_at >= self.pending_timeout_s:
                # Not on the node yet (the node watch cannot see an unscheduled pod): one GET.
                fetched_at = loop.time()
                last = await asyncio.to_thread(self._get, state.name)
                if last is None:
                    state.deleted = True
                    return _infra_deleted()
            if last is None and not state.deleted:
                continue
            if last is None:
                return _infra_deleted()
            verdict = classify(
                last,
                now=datetime.now(UTC),
                deleted=state.deleted,
                pending_timeout_s=self.pending_timeout_s,
                waiting_grace_s=self.waiting_grace_s,
            )
            state.verdict = verdict
            state.pod = last
            if _container_started(state):
                follow()
            if verdict.kind is PodOutcome.SETTLING:
                await asyncio.sleep(0.5)
                fresh = await asyncio.to_thread(self._get, state.name)
                if fresh is not None:
                    updates.put_nowait((fresh, False))
                continue
            if verdict.finished:
                return verdict

    async def _until_stopped(
        self, state: _Run, updates: asyncio.Queue[tuple[dict[str, Any], bool]], until: float
    ) -> bool:
        """After a stop request: wait for the container to terminate (True) or `until` (False)."""
        loop = asyncio.get_running_loop()
        pod = state.pod
        while not _terminated(pod):
            remaining = until - loop.time()
            if remaining <= 0:
                return False
            try:
                pod, deleted = await asyncio.wait_for(updates.get(), remaining)
            except TimeoutError:
                return False
            if deleted:
                return True
        return True

    def _stop_pod(self, name: str) -> None:
        """Lower the pod's deadline to 1s: the kubelet stops it, the pod and its log stay. Blocking."""
        try:
            _with_retries(
                lambda: self._core.patch_namespaced_pod(
                    name,
                    self.settings.namespace,
                    body={"spec": {"activeDeadlineSeconds": 1}},
                    _preload_content=False,
                )
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("could not stop pod %s (%s); deleting it", name, _reason(exc))

    def _get(self, name: str) -> dict[str, Any] | None:
        try:
            response = self._core.read_namespaced_pod(name, self.settings.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data: dict[str, Any] = json.loads(response.data)
        return data

    def _delete(self, name: str, secret_owned: bool) -> None:
        """Delete the pod (Background: its Secret is garbage-collected) and, if not owned, the Secret."""
        try:
            _with_retries(
                lambda: self._core.delete_namespaced_pod(
                    name,
                    self.settings.namespace,
                    propagation_policy="Background",
                    grace_period_seconds=0,
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete pod %s: %s", name, _reason(exc))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("could not delete pod %s: %s", name, exc)
        if not secret_owned:
            self._delete_secret(name)

    def _delete_secret(self, name: str) -> None:
        try:
            _with_retries(
                lambda: self._core.delete_namespaced_secret(
                    name, self.settings.namespace, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete secret %s: %s", name, _reason(exc))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("could not delete secret %s: %s", name, exc)

    @staticmethod
    def _flush(splitter: LineSplitter, batch: Output, deliver: Callable[[Output], None]) -> None:
        """Deliver the last, unterminated line (the reader thread is done with the splitter)."""
        splitter.flush()
        if batch:
            items = list(batch)
            batch.clear()
            deliver(items)

    @staticmethod
    def _result(verdict: PodVerdict, current: int) -> ExecutionResult:
        kind = verdict.kind
        if kind is PodOutcome.SUCCEEDED:
            return ExecutionResult(StageStatus.SUCCEEDED, exit_code=0)
        if kind is PodOutcome.FAILED:
            if verdict.oom_killed:
                return ExecutionResult(
                    StageStatus.FAILED,
                    exit_code=verdict.exit_code,
                    message=verdict.message,
                    command=current,
                    oom_killed=True,
                )
            return ExecutionResult(
                StageStatus.FAILED,
                exit_code=verdict.exit_code,
                message=f"exit code {verdict.exit_code}",
                command=current,
            )
        if kind is PodOutcome.TIMED_OUT:
            return ExecutionResult(StageStatus.TIMED_OUT, message=verdict.message, command=current)
        if kind is PodOutcome.INFRASTRUCTURE:
            return ExecutionResult(
                StageStatus.ERROR,
                message=_flat(f"infrastructure: {verdict.message}"),
                command=current,
                infrastructure=True,
            )
        return _error(verdict.message)

    async def close(self) -> None:
        """Stop the watch and close the API connections."""
        self._watch.stop()
        await asyncio.to_thread(self._api.close)


class _CreateError(Exception):
    """The pod or its secret could not be created; the message is the result's."""


def _container_started(state: _Run) -> bool:
    pod = state.pod
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == STAGE_CONTAINER:
            current = status.get("state") or {}
            return "running" in current or "terminated" in current
    return False


def _terminated(pod: Mapping[str, Any] | None) -> bool:
    if pod is None:
        return False
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == STAGE_CONTAINER and "terminated" in (status.get("state") or {}):
            return True
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Failed", "Succeeded") and not any(
        status.get("name") == STAGE_CONTAINER
        for status in (pod.get("status") or {}).get("containerStatuses") or []
    )


async def _wait_event(event: threading.Event, timeout: float) -> bool:
    return await asyncio.to_thread(event.wait, timeout)


def _infra_deleted() -> PodVerdict:
    return PodVerdict(
        PodOutcome.INFRASTRUCTURE, message="the stage's pod was deleted before the stage finished"
    )


def _flat(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + "…"


def _error(message: str) -> ExecutionResult:
    return ExecutionResult(StageStatus.ERROR, message=_flat(message))
