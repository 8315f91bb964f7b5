"""A local OIDC issuer for the API's token tests (RSA key, JWKS over HTTP, a token minter), and an API
server configured to trust it."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agentry_api.settings import Settings

from .server import ApiServer, start_api

ISSUER, AUDIENCE = "https://issuer.test", "agentry-test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A local OIDC issuer: an RSA key, its JWKS served over HTTP, and a token minter."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()
        jwks = {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "use": "sig",
                    "alg": "RS256",
                    "n": b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64(numbers.e.to_bytes(3, "big")),
                }
            ]
        }
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.jwks_url = f"http://127.0.0.1:{self.http.server_address[1]}/jwks"

    def token(self, key: rsa.RSAPrivateKey | None = None, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, **claims}
        header = {"alg": alg, "kid": "k1", "typ": "JWT"}
        signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
        signature = (key or self.key).sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{b64(signature) if alg != 'none' else ''}"


@contextmanager
def api_trusting_issuer(settings: Callable[[Issuer], Settings]) -> Iterator[tuple[ApiServer, Issuer]]:
    """A fresh Issuer and an API server whose settings (made from it) trust it; both stopped after."""
    issuer = Issuer()
    server = start_api(settings(issuer))
    try:
        yield server, issuer
    finally:
        server.stop()
        issuer.http.shutdown()
