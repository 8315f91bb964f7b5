"""Business logic: routes translate HTTP to these services and back."""
