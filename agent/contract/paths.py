"""What an artifact path may be: checked on both sides of the wire, so it is part of the contract."""

from __future__ import annotations


def artifact_path_problem(path: str) -> str | None:
    """What is wrong with an artifact path received from elsewhere, or None when it is safe.

    A safe path is relative, '/'-separated and normalised: no leading '/', no '..', '.' or empty
    parts, no NUL. Used on both sides of the wire: the controller refuses such uploads, and the
    agent refuses to write such downloads, so a bad path never reaches a file system.
    """
    if not path:
        return "artifact path is empty"
    if "\0" in path:
        return f"artifact path {path!r} contains a NUL character"
    if len(path.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        return f"artifact path {path[:80]!r}... is longer than {_MAX_PATH_BYTES} bytes"
    if path.startswith("/"):
        return f"artifact path '{path}' is absolute; artifact paths are relative to the workspace"
    parts = path.split("/")
    if ".." in parts:
        return f"artifact path '{path}' contains '..'; artifacts must stay in the workspace"
    if any(part in ("", ".") for part in parts):
        return f"artifact path '{path}' is not normalised (empty or '.' parts); send e.g. 'dist/app.whl'"
    return None


_MAX_PATH_BYTES = 4096
