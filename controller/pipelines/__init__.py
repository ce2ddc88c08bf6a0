"""Pipelines: a named `.buildit.kdl` configuration that runs are started from."""
