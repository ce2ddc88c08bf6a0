"""Live updates for the web UI: one WebSocket per page at `/ws` (protocol in `controller.live.socket`)."""
