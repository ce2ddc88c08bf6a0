"""gRPC: the only controller code touching generated stubs (servicers, auth, the server)."""
