"""Helpers shared by tests of every level (clients that sign in like users do)."""
