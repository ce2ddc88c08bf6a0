"""Organizations and tenants (workspaces): every other row belongs to one of each."""
