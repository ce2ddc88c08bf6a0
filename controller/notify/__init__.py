"""Outgoing notifications: a signed JSON (or Slack-compatible) webhook when a run finishes, fails
or is fixed, per pipeline or for a whole tenant, delivered in the background with retries and a
delivery log. See `controller.notify.delivery` for how a delivery travels."""
