"""BuildIt agent: registers with a controller, leases stages, runs them with its executors.

Kept light on purpose (grpc, protobuf, the standard library, and the docker SDK only when the docker
executor is used): an idle agent must cost little memory on every build host. It never imports the
controller package.
"""

#: Sent in RegisterRequest.version; the controller refuses versions it is not compatible with.
__version__ = "0.1.0"
