"""Turning repository changes, webhooks, cron schedules and manual requests into runs."""
