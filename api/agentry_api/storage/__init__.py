"""Firestore access: one async client, one `Store` with a method per question the API asks."""

from .store import Contended, Store, new_client, now_iso

__all__ = ["Contended", "Store", "new_client", "now_iso"]
