"""The API commands of `agentry`, one module per resource."""
