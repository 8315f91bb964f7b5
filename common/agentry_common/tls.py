"""One TLS client context per process.

httpx builds an SSL context for every client it makes (and its module functions, `httpx.get`, make a
client per call), loading the whole CA bundle each time: about 40 ms of CPU, even for a plain-HTTP
URL. Clients made per request or per call take this one instead (`verify=client_context()`).
"""

from __future__ import annotations

import os
import ssl
from functools import cache

import certifi


@cache
def client_context(trust_env: bool = True) -> ssl.SSLContext:
    """httpx's default verification, built once: certifi's CA bundle; with `trust_env`,
    SSL_CERT_FILE or SSL_CERT_DIR instead when set (as httpx reads them)."""
    if trust_env and os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if trust_env and os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())
