"""agentry_common."""
