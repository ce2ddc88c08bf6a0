"""Piccolo migrations of the "buildit" app (generated; see controller.db.migrate for how to add one)."""
