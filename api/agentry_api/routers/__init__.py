"""One APIRouter per resource, collected by `main.create_app`."""
