"""agentry_api."""
