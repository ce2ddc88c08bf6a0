"""A FAKE Kubernetes API server for tests: loopback HTTP, in-memory objects, a scripted "kubelet".

Why a fake: no kube-apiserver, etcd or kubelet can be obtained on these machines (see
/work/shared/research/k8s.md §11). The real `kubernetes` client talks to this server over real HTTP,
so the client's wire protocol, serialization, streaming (`_preload_content=False`) and our watch
parsing are genuine; what is fake is the server side. It implements only what BuildIt's Kubernetes
executor uses, with response bodies shaped like the real API server's (checked against the API
reference):

- pods and secrets in a namespace: POST (201 with the object; 409 `AlreadyExists` Status), GET,
  PATCH (merge patch), DELETE (a pod DELETE returns the Pod, as the real server does, not a Status);
- pod list with `labelSelector` (`k=v`, comma-joined) and `fieldSelector` (`spec.nodeName=`,
  `metadata.name=`), and watch (`?watch=1`: chunked JSON lines ADDED/MODIFIED/DELETED, BOOKMARK when
  `allowWatchBookmarks`, ERROR 410 `Expired` when `resourceVersion` is older than the compaction);
- `pods/{name}/log` (raw bytes, `follow` chunked until the container terminates, `container`,
  400 while the container is waiting to start; can drop the connection mid-stream on request);
- events list; error injection (any status, with `Retry-After`).

Nothing runs containers: the test scripts what the "kubelet" reports (scheduled, running, output,
terminated with an exit code or OOMKilled, evicted, image pull errors), or sets `on_create` to
script every new pod.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeKubeAPI", "Injection"]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `Status` object as the real API server sends for errors."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386): what `application/merge-patch+json` does."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class _QuietServer(ThreadingHTTPServer):
    """Clients hanging up mid-stream (the executor interrupting a watch or a log) are normal here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


@dataclass
class Injection:
    """An error the fake answers instead of serving a request (`times` requests, then gone)."""

    method: str
    resource: str  # "pods", "secrets", "log", "watch", "list", "events"
    code: int
    reason: str
    retry_after: int | None = None
    times: int = 1


@dataclass
class _Log:
    data: bytearray = field(default_factory=bytearray)
    #: Drop the next follow connection after this many bytes of it were sent (None: never).
    drop_after: int | None = None


class FakeKubeAPI:
    """The fake API server (see the module docstring). Use as a context manager."""

    def __init__(self, namespace: str = "builds", node: str = "node-a") -> None:
        self.namespace = namespace
        self.node = node
        self._lock = threading.Condition()
        self._rv = 100
        self._compacted = 0
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.deleted_pods: list[dict[str, Any]] = []
        self.deleted_secrets: list[str] = []
        self._history: list[tuple[int, str, dict[str, Any]]] = []
        self._logs: dict[str, _Log] = {}
        self._injections: list[Injection] = []
        self._watch_generation = 0
        #: Every request served: (method, path, query string).
        self.requests: list[tuple[str, str, str]] = []
        #: Called (in the server's thread) with each new pod's name after its creation.
        self.on_create: Callable[[str], None] | None = None
        self.events: list[dict[str, Any]] = []
        self._created: list[str] = []
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._watch_generation += 1
            self._closed = True
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    _closed = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig pointing at this fake (plain HTTP on loopback, a dummy token)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": self.namespace}}
            ],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path

    # ------------------------------------------------------------------ test controls

    def inject(
        self,
        method: str,
        resource: str,
        code: int,
        reason: str,
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with a Status error (and `Retry-After`)."""
        with self._lock:
            self._injections.append(Injection(method, resource, code, reason, retry_after, times))

    def requests_to(self, method: str, fragment: str) -> int:
        """How many requests of `method` had `fragment` in their path or query."""
        with self._lock:
            return sum(1 for m, p, q in self.requests if m == method and (fragment in p or fragment in q))

    def wait_for_pod(self, timeout: float = 30.0, index: int = 0) -> str:
        """The name of the `index`-th pod created (waits for it)."""
        with self._lock:
            ok = self._lock.wait_for(lambda: len(self._created) > index, timeout)
            if not ok:
                raise AssertionError("no pod was created")
            return self._created[index]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until `predicate()` (called under the fake's lock) holds."""
        with self._lock:
            if not self._lock.wait_for(predicate, timeout):
                raise AssertionError("condition not reached")

    def preload_pod(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Store a pod as if an earlier request had created it."""
        with self._lock:
            return self._create_pod(copy.deepcopy(manifest))

    def compact(self) -> None:
        """Forget the watch history up to now, and end open watches with ERROR 410 Expired."""
        with self._lock:
            self._compacted = self._rv
            self._history.clear()
            self._watch_generation += 1
            self._lock.notify_all()

    def drop_log_after(self, pod: str, nbytes: int) -> None:
        """The next follow of `pod`'s log closes its connection after sending `nbytes` bytes."""
        with self._lock:
            self._logs.setdefault(pod, _Log()).drop_after = nbytes

    # ------------------------------------------------------------------ the scripted kubelet

    def schedule(self, name: str) -> None:
        """The scheduler bound the pod to its node (from the affinity) and the kubelet saw it."""

        def change(pod: dict[str, Any]) -> None:
            terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            pod["spec"]["nodeName"] = terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            status = pod["status"]
            status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}]
            status["startTime"] = _now()
            status["containerStatuses"] = [
                self._container(pod, "stage", {"waiting": {"reason": "ContainerCreating"}})
            ]

        self._update(name, change)

    def start(self, name: str) -> None:
        """The stage container runs."""

        def change(pod: dict[str, Any]) -> None:
            pod["status"]["phase"] = "Running"
            for cond in ("Initialized", "ContainersReady", "Ready"):
                pod["status"]["conditions"].append(
                    {"type": cond, "status": "True", "lastTransitionTime": _now()}
                )
            started = {"running": {"startedAt": _now()}}
            pod["status"]["containerStatuses"] = [self._container(pod, "stage", started, ready=True)]

        self._update(name, change)

    def write_log(self, name: str, data: bytes) -> None:
        """The stage container prints `data`."""
        with self._lock:
            self._logs.setdefault(name, _Log()).data.extend(data)
            self._lock.notify_all()

    def terminate(self, name: str, exit_code: int, reason: str = "") -> None:
        """The stage container ends with `exit_code` (reason Completed/Error unless given)."""
        reason = reason or ("Completed" if exit_code == 0 else "Error")

        def change(pod: dict[str, Any]) -> None:
            pod["status"]["phase"] = "Succeeded" if exit_code == 0 and reason == "Completed" else "Failed"
            state = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": _now(),
                    "finishedAt": _now(),
                    "containerID": "containerd://" + uuid.uuid4().hex,
                }
            }
            pod["status"]["containerStatuses"] = [self._container(pod, "stage", state)]

        self._update(name, change)

    def script(self, name: str, output: bytes, exit_code: int, reason: str = "") -> None:
        """Schedule, start, print `output`, then end with `exit_code`."""
        self.schedule(name)
        self.start(name)
        self.write_log(name, output)
        self.terminate(name, exit_code, reason)

    def evict(self, name: str) -> None:
        """The kubelet evicted the pod under node pressure (shape from real evictions)."""

        def change(pod: dict[str, Any]) -> None:
            status = pod["status"]
            status["phase"] = "Failed"
            status["reason"] = "Evicted"
            status["message"] = (
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi."
            )
            status["conditions"].append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "TerminationByKubelet",
                    "message": "The node was low on resource: memory.",
                    "lastTransitionTime": _now(),
                }
            )

        self._update(name, change)

    def unschedulable(self, name: str, message: str) -> None:
        """The scheduler cannot place the pod (shape of a real `PodScheduled=False` condition)."""

        def change(pod: dict[str, Any]) -> None:
            pod["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastTransitionTime": _now(),
                }
            ]

        self._update(name, change)

    def image_pull_error(self, name: str, reason: str, message: str) -> None:
        """The stage image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`)."""

        def change(pod: dict[str, Any]) -> None:
            waiting = {"waiting": {"reason": reason, "message": message}}
            pod["status"]["containerStatuses"] = [self._container(pod, "stage", waiting)]

        self._update(name, change)

    # ------------------------------------------------------------------ store (under the lock)

    def _container(
        self, pod: dict[str, Any], name: str, state: dict[str, Any], ready: bool = False
    ) -> dict[str, Any]:
        image = next((c["image"] for c in pod["spec"]["containers"] if c["name"] == name), "")
        return {
            "name": name,
            "image": image,
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    def _bump(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _record(self, kind: str, pod: dict[str, Any]) -> None:
        self._history.append((self._rv, kind, copy.deepcopy(pod)))
        self._lock.notify_all()

    def _update(self, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            pod = self.pods[name]
            change(pod)
            self._bump(pod)
            self._record("MODIFIED", pod)
            self._check_deadline(pod)

    def _create_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        meta.update(
            {
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "namespace": self.namespace,
                "generation": 1,
            }
        )
        body["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        self._bump(body)
        self.pods[meta["name"]] = body
        self._created.append(meta["name"])
        self._record("ADDED", body)
        return body

    def _check_deadline(self, pod: dict[str, Any]) -> None:
        """The kubelet's `activeDeadlineSeconds` enforcement, simplified: a deadline of 1 second or
        less (what a cancel patches in) kills the running pod now; longer ones are not enforced."""
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is None or deadline > 1 or pod["status"].get("reason") == "DeadlineExceeded":
            return
        status = pod["status"]
        status["phase"] = "Failed"
        status["reason"] = "DeadlineExceeded"
        status["message"] = "Pod was active on the node longer than the specified deadline"
        for container in status.get("containerStatuses") or []:
            if "terminated" not in container["state"]:
                container["state"] = {
                    "terminated": {"exitCode": 137, "reason": "Error", "finishedAt": _now()}
                }
        self._bump(pod)
        self._record("MODIFIED", pod)

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_PATCH(self) -> None:
                fake._serve(self, "PATCH")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

        return Handler

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        code: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _chunk(self, h: BaseHTTPRequestHandler, data: bytes) -> None:
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    def _start_chunked(self, h: BaseHTTPRequestHandler, content_type: str) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True

    def _injected(self, method: str, resource: str) -> Injection | None:
        for injection in self._injections:
            if injection.method == method and injection.resource == resource and injection.times > 0:
                injection.times -= 1
                return injection
        return None

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        parts = url.path.strip("/").split("/")
        with self._lock:
            self.requests.append((method, url.path, url.query))
            self._lock.notify_all()
        # /api/v1/namespaces/{ns}/{resource}[/{name}[/log]]
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5:
            self._send(h, 404, _status(404, "NotFound", "the server could not find the requested resource"))
            return
        ns, resource, rest = parts[3], parts[4], parts[5:]
        kind = resource
        if rest[1:] == ["log"]:
            kind = "log"
        elif resource == "pods" and not rest and method == "GET":
            kind = "watch" if query.get("watch") in ("1", "true") else "list"
        with self._lock:
            injection = self._injected(method, kind)
        if injection is not None:
            headers = {"Retry-After": str(injection.retry_after)} if injection.retry_after is not None else {}
            message = "injected by the fake: " + injection.reason
            self._send(h, injection.code, _status(injection.code, injection.reason, message), headers)
            return
        if ns != self.namespace:
            self._send(h, 403, _status(403, "Forbidden", f'namespace "{ns}" is not this fake\'s'))
            return
        body = json.loads(raw) if raw else {}
        if resource == "pods":
            self._pods(h, method, kind, rest, query, body)
        elif resource == "secrets":
            self._secrets(h, method, rest, body)
        elif resource == "events" and method == "GET":
            self._send(
                h,
                200,
                {
                    "kind": "EventList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": self.events,
                },
            )
        else:
            self._send(h, 405, _status(405, "MethodNotAllowed", "not supported by the fake"))

    def _not_found(self, h: BaseHTTPRequestHandler, resource: str, name: str) -> None:
        details = {"name": name, "kind": resource}
        self._send(h, 404, _status(404, "NotFound", f'{resource} "{name}" not found', details))

    def _pods(
        self,
        h: BaseHTTPRequestHandler,
        method: str,
        kind: str,
        rest: list[str],
        query: dict[str, str],
        body: dict[str, Any],
    ) -> None:
        if kind == "watch":
            self._watch(h, query)
            return
        if kind == "log":
            self._log(h, rest[0], query)
            return
        if kind == "list":
            with self._lock:
                items = [copy.deepcopy(p) for p in self.pods.values() if self._matches(p, query)]
                rv = str(self._rv)
            self._send(
                h,
                200,
                {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items},
            )
            return
        if method == "POST" and not rest:
            name = body.get("metadata", {}).get("name", "")
            with self._lock:
                if name in self.pods:
                    details = {"name": name, "kind": "pods"}
                    self._send(
                        h, 409, _status(409, "AlreadyExists", f'pods "{name}" already exists', details)
                    )
                    return
                pod = copy.deepcopy(self._create_pod(body))
            self._send(h, 201, pod)
            if self.on_create is not None:
                threading.Thread(target=self.on_create, args=(name,), daemon=True).start()
            return
        name = rest[0] if rest else ""
        with self._lock:
            found = self.pods.get(name)
            if found is None:
                self._not_found(h, "pods", name)
                return
            pod = found
            if method == "GET":
                self._send(h, 200, copy.deepcopy(pod))
            elif method == "PATCH":
                _merge(pod, body)
                self._bump(pod)
                self._record("MODIFIED", pod)
                self._check_deadline(pod)
                self._send(h, 200, copy.deepcopy(pod))
            elif method == "DELETE":
                # Graceful deletion, then gone: the real server answers with the Pod (deletionTimestamp
                # set); the watch sees MODIFIED then DELETED. The garbage collector then deletes what
                # the pod owns (its Secret).
                pod["metadata"]["deletionTimestamp"] = _now()
                pod["metadata"]["deletionGracePeriodSeconds"] = 0
                self._bump(pod)
                self._record("MODIFIED", pod)
                answer = copy.deepcopy(pod)
                del self.pods[name]
                self._bump(pod)
                self._record("DELETED", pod)
                self.deleted_pods.append(answer)
                uid = pod["metadata"]["uid"]
                for secret_name, secret in list(self.secrets.items()):
                    owners = secret["metadata"].get("ownerReferences") or []
                    if any(ref.get("uid") == uid for ref in owners):
                        del self.secrets[secret_name]
                        self.deleted_secrets.append(secret_name)
                self._send(h, 200, answer)

    def _secrets(self, h: BaseHTTPRequestHandler, method: str, rest: list[str], body: dict[str, Any]) -> None:
        with self._lock:
            if method == "POST" and not rest:
                name = body.get("metadata", {}).get("name", "")
                if name in self.secrets:
                    details = {"name": name, "kind": "secrets"}
                    self._send(
                        h, 409, _status(409, "AlreadyExists", f'secrets "{name}" already exists', details)
                    )
                    return
                body["metadata"].update({"uid": str(uuid.uuid4()), "creationTimestamp": _now()})
                self._bump(body)
                self.secrets[name] = body
                self._send(h, 201, body)
                return
            name = rest[0] if rest else ""
            secret = self.secrets.get(name)
            if secret is None:
                self._not_found(h, "secrets", name)
                return
            if method == "GET":
                self._send(h, 200, secret)
            elif method == "PATCH":
                _merge(secret, body)
                self._bump(secret)
                self._lock.notify_all()
                self._send(h, 200, secret)
            elif method == "DELETE":
                del self.secrets[name]
                self.deleted_secrets.append(name)
                # Secrets answer deletes with a Status (success), as the real server does for them.
                ok = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": name, "kind": "secrets", "uid": secret["metadata"]["uid"]},
                }
                self._send(h, 200, ok)

    def _matches(self, pod: dict[str, Any], query: dict[str, str]) -> bool:
        labels = pod["metadata"].get("labels") or {}
        for term in filter(None, query.get("labelSelector", "").split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        for term in filter(None, query.get("fieldSelector", "").split(",")):
            key, _, value = term.partition("=")
            if key == "spec.nodeName" and pod["spec"].get("nodeName", "") != value:
                return False
            if key == "metadata.name" and pod["metadata"]["name"] != value:
                return False
        return True

    def _watch(self, h: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or 300)
        self._start_chunked(h, "application/json")
        with self._lock:
            generation = self._watch_generation
            if since and since < self._compacted:
                self._expired(h, since)
                return
        sent = since
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.daemon = True
        timer.start()
        try:
            while not deadline.is_set():
                with self._lock:
                    self._lock.wait_for(
                        lambda since=sent: (  # type: ignore[misc]
                            self._closed
                            or self._watch_generation != generation
                            or any(rv > since for rv, _, _ in self._history)
                        ),
                        timeout=0.5,
                    )
                    if self._closed:
                        break
                    if self._watch_generation != generation:
                        self._expired(h, sent)
                        return
                    pending = [(rv, t, p) for rv, t, p in self._history if rv > sent]
                    current = self._rv
                lines = b""
                for rv, event_type, pod in pending:
                    sent = rv
                    if self._matches(pod, query):
                        lines += json.dumps({"type": event_type, "object": pod}).encode() + b"\n"
                if not pending and bookmarks and current > sent:
                    sent = current
                    mark = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(current)}}
                    lines += json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n"
                if lines:
                    self._chunk(h, lines)
            self._chunk(h, b"")
        except OSError:
            return
        finally:
            timer.cancel()

    def _expired(self, h: BaseHTTPRequestHandler, since: int) -> None:
        message = f"too old resource version: {since} ({self._compacted})"
        event = {"type": "ERROR", "object": _status(410, "Expired", message)}
        try:
            self._chunk(h, json.dumps(event).encode() + b"\n")
            self._chunk(h, b"")
        except OSError:
            return

    def _log(self, h: BaseHTTPRequestHandler, name: str, query: dict[str, str]) -> None:
        container = query.get("container", "stage")
        with self._lock:
            pod = self.pods.get(name)
            if pod is None:
                self._not_found(h, "pods", name)
                return
            statuses = {c["name"]: c for c in pod["status"].get("containerStatuses") or []}
            state = (statuses.get(container) or {}).get("state") or {}
            if "running" not in state and "terminated" not in state:
                reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
                message = f'container "{container}" in pod "{name}" is waiting to start: {reason}'
                self._send(h, 400, _status(400, "BadRequest", message))
                return
            log = self._logs.setdefault(name, _Log())
            drop_after, log.drop_after = log.drop_after, None
        follow = query.get("follow") in ("true", "1")
        self._start_chunked(h, "text/plain")
        offset = 0
        sent_here = 0
        try:
            while True:
                with self._lock:
                    if follow:
                        self._lock.wait_for(
                            lambda at=offset: (  # type: ignore[misc]
                                self._closed or len(log.data) > at or self._terminated(name, container)
                            ),
                            timeout=0.5,
                        )
                    data = bytes(log.data[offset:])
                    done = self._closed or not follow or self._terminated(name, container)
                if drop_after is not None and sent_here + len(data) >= drop_after:
                    part = data[: drop_after - sent_here]
                    if part:
                        self._chunk(h, part)
                    # Drop the connection without the final chunk: the client sees the stream end.
                    h.wfile.flush()
                    return
                if data:
                    self._chunk(h, data)
                    offset += len(data)
                    sent_here += len(data)
                if done and len(log.data) <= offset:
                    break
            self._chunk(h, b"")
        except OSError:
            return

    def _terminated(self, name: str, container: str) -> bool:
        pod = self.pods.get(name)
        if pod is None:
            return True
        for status in pod["status"].get("containerStatuses") or []:
            if status["name"] == container and "terminated" in status["state"]:
                return True
        return False
