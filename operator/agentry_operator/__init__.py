"""agentry_operator."""
