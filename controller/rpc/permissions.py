"""The permission each gRPC method needs: the gRPC half of the route declarations.

A test walks the service descriptors and fails when a method is missing here.
"""

from __future__ import annotations

from controller.auth.permissions import Permission

AGENT_SERVICE = "/buildit.v1.AgentService/"
BUILDIT_SERVICE = "/buildit.v1.BuildItService/"

METHOD_PERMISSIONS: dict[str, Permission] = {
    # Register is authenticated by the registration token in its request; the rest by the agent token.
    f"{AGENT_SERVICE}Register": Permission.PUBLIC,
    **{
        f"{AGENT_SERVICE}{name}": Permission.AGENT
        for name in (
            "Lease",
            "ExtendLease",
            "Heartbeat",
            "UpdateStage",
            "StreamLogs",
            "UploadArtifact",
            "DownloadArtifacts",
        )
    },
    f"{BUILDIT_SERVICE}TriggerRun": Permission.RUN,
    f"{BUILDIT_SERVICE}GetRun": Permission.READ,
    f"{BUILDIT_SERVICE}ListRuns": Permission.READ,
    f"{BUILDIT_SERVICE}WatchRun": Permission.READ,
    f"{BUILDIT_SERVICE}StreamLogs": Permission.READ,
    f"{BUILDIT_SERVICE}CancelRun": Permission.RUN,
    f"{BUILDIT_SERVICE}ListAgents": Permission.READ,
    f"{BUILDIT_SERVICE}ValidatePipeline": Permission.READ,
    f"{BUILDIT_SERVICE}RetryStage": Permission.RUN,
    f"{BUILDIT_SERVICE}RerunRun": Permission.RUN,
    f"{BUILDIT_SERVICE}DrainAgent": Permission.MANAGE,
    # Pipelines and agents managed in the product.
    f"{BUILDIT_SERVICE}GetPipeline": Permission.READ,
    f"{BUILDIT_SERVICE}UpdatePipeline": Permission.MANAGE,
    f"{BUILDIT_SERVICE}DeletePipeline": Permission.MANAGE,
    f"{BUILDIT_SERVICE}RemoveAgent": Permission.MANAGE,
}

#: Standard services stock tools use without credentials (grpcurl, load balancers).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")


def method_permission(method: str) -> Permission | None:
    """The permission of a method, or None (undeclared: refused)."""
    if method.startswith(PUBLIC_PREFIXES):
        return Permission.PUBLIC
    return METHOD_PERMISSIONS.get(method)
