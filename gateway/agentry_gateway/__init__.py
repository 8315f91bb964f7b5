"""Agentry's LLM gateway: provider keys stay here; run pods call it with a per-Execution token.

See docs/governance.md. `create_app()` (agentry_gateway.app) is the ASGI factory.
"""
