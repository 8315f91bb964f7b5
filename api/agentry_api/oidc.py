"""OIDC bearer tokens: verify a JWT signed by the issuer's keys (JWKS), RS256.

`TokenVerifier` is the pluggable part: production uses `JWKSVerifier` (Google identity, Dex, ...);
tests pass a verifier built on a locally generated RSA key. Only RS256 is accepted: `alg: none` and
HMAC algorithms (key confusion) are refused.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Protocol

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agentry_common.tls import client_context

LEEWAY_SECONDS = 60
JWKS_TTL_SECONDS = 600
JWKS_MIN_REFRESH_SECONDS = 30


class InvalidToken(Exception):
    """The token is not acceptable; the message says why (safe to show, never echoes the token)."""


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> dict[str, Any]: ...


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidToken("malformed token") from exc


def _int(value: str) -> int:
    return int.from_bytes(_b64decode(value), "big")


def rsa_key_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    if jwk.get("kty") != "RSA" or "n" not in jwk or "e" not in jwk:
        raise InvalidToken("signing key is not an RSA key")
    return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()


def split_token(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except ValueError as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidToken("malformed token")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), _b64decode(parts[2])


def check_claims(claims: dict[str, Any], issuer: str, audience: str | None, now: float) -> None:
    if claims.get("iss") != issuer:
        raise InvalidToken("token issuer is not accepted")
    if audience is not None:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if audience not in auds:
            raise InvalidToken("token audience is not accepted")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp < now - LEEWAY_SECONDS:
        raise InvalidToken("token expired")
    nbf = claims.get("nbf", claims.get("iat"))
    if isinstance(nbf, int | float) and nbf > now + LEEWAY_SECONDS:
        raise InvalidToken("token not valid yet")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidToken("token has no subject")


class JWKSVerifier:
    """Verifies RS256 JWTs against the keys published at `jwks_url` (cached, refreshed on a new kid)."""

    def __init__(self, issuer: str, audience: str | None, jwks_url: str) -> None:
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched = 0.0

    async def _refresh(self) -> None:
        async with httpx.AsyncClient(timeout=5, verify=client_context()) as http:
            resp = await http.get(self.jwks_url)
            resp.raise_for_status()
            keys = resp.json().get("keys", [])
        self._keys = {
            str(k.get("kid", "")): rsa_key_from_jwk(k)
            for k in keys
            if k.get("kty") == "RSA" and k.get("use", "sig") == "sig"
        }
        self._fetched = time.monotonic()

    async def _key(self, kid: str) -> rsa.RSAPublicKey:
        age = time.monotonic() - self._fetched
        if (kid not in self._keys and age > JWKS_MIN_REFRESH_SECONDS) or age > JWKS_TTL_SECONDS:
            try:
                await self._refresh()
            except (httpx.HTTPError, ValueError) as exc:
                if kid not in self._keys:
                    raise InvalidToken("the issuer's signing keys cannot be fetched") from exc
        if kid not in self._keys:
            raise InvalidToken("token signed by an unknown key")
        return self._keys[kid]

    async def verify(self, token: str) -> dict[str, Any]:
        header, claims, signed, signature = split_token(token)
        if header.get("alg") != "RS256":
            raise InvalidToken("token algorithm is not accepted (RS256 only)")
        key = await self._key(str(header.get("kid", "")))
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise InvalidToken("token signature is invalid") from exc
        check_claims(claims, self.issuer, self.audience, time.time())
        return claims
