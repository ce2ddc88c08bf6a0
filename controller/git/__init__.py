"""Git access. The only package that imports dulwich.

Importing this package loads neither dulwich nor watchfiles: each function imports what it needs.
"""

from controller.git.mirror import (
    CommitMeta,
    GitError,
    Mirror,
    RepoSource,
    git_dir,
    parse_source,
    redact,
    remote_branches,
)
from controller.git.smart_http import UPLOAD_PACK, advertisement, upload_pack
from controller.git.watch import watch_refs

__all__ = [
    "UPLOAD_PACK",
    "CommitMeta",
    "GitError",
    "Mirror",
    "RepoSource",
    "advertisement",
    "git_dir",
    "parse_source",
    "redact",
    "remote_branches",
    "upload_pack",
    "watch_refs",
]
