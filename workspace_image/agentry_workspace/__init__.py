"""agentry_workspace."""
