"""Cross-site protection and request hygiene for the HTTP app, as one Litestar plugin.

A browser that has the BuildIt UI open can be made to send requests by any other web page; the
controller must tell those apart and refuse them, and no request may hold it up or crash a
handler by its shape. Each concern is a small module; `WebSecurity` (plugin.py) puts them into
the app (create_app adds it to `plugins`):

* headers.py: security headers on every response, the strict CSP on UI pages;
* origin.py: same-origin test for `/ws` and for state-changing requests;
* content_type.py: JSON routes accept only JSON bodies (415 otherwise);
* body_timeout.py: a request body must arrive within a deadline (408 otherwise);
* guard.py: the middleware applying origin, content type and body deadline;
* request.py: the request class that refuses JSON nested too deeply (controller.json_depth, which
  the webhooks and /ws use too) before decoding it.
"""

from controller.http.plugin import WebSecurity

__all__ = ["WebSecurity"]
