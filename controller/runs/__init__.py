"""Runs of a pipeline and their stage runs (status, leases, attempts, log index)."""
