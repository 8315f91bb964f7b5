"""Test doubles and dev tools: scripted LLM providers, Google Cloud stand-ins, the CRD doc generator.

Imported only by tests, bench and `make` targets; never installed in an image.
"""
