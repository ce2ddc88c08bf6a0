"""The environment a local stage inherits from its agent: the host's, minus the agent's own secrets.

A process stage starts from the agent's environment (PATH, proxies, locale, toolchains) like a
shell on the host would, but the agent's configuration is not the stage's business, and some of it
is secret: the registration token, TLS key paths, a database URL with its password when the stage
runs inside `buildit up`. So every inherited `BUILDIT_*` variable is dropped, and so is any
variable whose value holds one of the agent's credentials under another name. What the pipeline
gives the stage (its env and secrets) is added afterwards and kept, `BUILDIT_*` names included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["AGENT_PREFIX", "inherited_environment"]

#: The agent's settings and the controller's share this prefix; none of them is inherited.
AGENT_PREFIX: Final = "BUILDIT_"
#: Credentials shorter than this are not searched for in other variables' values (a false match on
#: a short string would drop ordinary variables).
_MIN_HIDDEN_CHARS: Final = 8


def inherited_environment(environ: Mapping[str, str], hidden: Iterable[str] = ()) -> dict[str, str]:
    """`environ` without `BUILDIT_*` variables and without any variable whose value contains `hidden`.

    Why by value too: an operator may pass the registration token to the agent under any name
    (a systemd `Environment=`, a Kubernetes secret mounted as env); the agent knows the value.
    """
    secrets = [value for value in hidden if len(value) >= _MIN_HIDDEN_CHARS]
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith(AGENT_PREFIX) and not any(secret in value for secret in secrets)
    }
