"""Watched Git repositories: registration, their mirrors' state, and the commits they trigger."""
