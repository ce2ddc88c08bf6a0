"""The agent fleet: registration, tokens, listing."""
