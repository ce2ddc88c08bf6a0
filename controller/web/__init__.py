"""The server-rendered web UI: Litestar page controllers, Jinja templates from web/, htmx fragments.

Pages read through the same services as the REST API; live updates arrive over the `/ws`
WebSocket (controller.live) and make the page re-fetch its fragments.
"""
