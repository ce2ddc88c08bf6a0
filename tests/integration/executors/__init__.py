"""Executor integration tests: real processes and the real Docker engine."""
