"""`WebSecurity`: the Litestar plugin that installs this package's parts into the app.

Why a plugin: create_app adds one entry to `plugins`, and the parts (a middleware, a before-send
hook, the request class) are appended to the app's configuration here, next to whatever else
(authentication, CSRF) the app is given, without touching those.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from controller.http.guard import RequestGuard
from controller.http.headers import security_headers
from controller.http.request import GuardedRequest

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "WebSecurity"]

DEFAULT_BODY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WebSecurity(InitPluginProtocol):
    """Security headers, same-origin checks, JSON-only bodies, body deadline and JSON depth.

    `public_url` is BUILDIT_PUBLIC_URL (its origin is accepted besides the request's own Host);
    `body_timeout_s` is BUILDIT_HTTP_BODY_TIMEOUT.
    """

    public_url: str = ""
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Put the guard outermost, add the headers hook, use the depth-checking request class.

        Outermost: a foreign origin or a non-JSON body is refused before any other middleware
        (CSRF, sessions) does work for it, and the body deadline covers whoever reads the body.
        """
        app_config.middleware.insert(0, RequestGuard(self.public_url, self.body_timeout_s))
        app_config.before_send.append(security_headers)
        app_config.request_class = GuardedRequest
        return app_config
