"""BuildIt controller: pipelines, scheduling, API. Also home of the `buildit` CLI."""

__version__ = "0.1.0"
