"""agentry_localcluster."""
