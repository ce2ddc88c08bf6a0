"""Git access. The only package that imports dulwich."""
