"""agentry_devenv."""
