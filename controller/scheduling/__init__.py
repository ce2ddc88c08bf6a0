"""Runs and stages as state machines, durable leases, retries, timeouts and cancellation."""
