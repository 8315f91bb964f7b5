"""`make dev` signs the dashboard in as the owner of the sample agents (kubectl-applied agents belong
to the API's import owner, so a guest would not see them or their runs).

The API gets a bootstrap admin token (AGENTRY_ADMIN_TOKEN, kept in the state directory, mode 0600, so
restarts keep it and the API pod is not rolled for nothing). Once the dashboard answers, `up` asks the
API for an ordinary API token of that user (revoking the previous one of `make dev`) and prints the
dashboard's address with `#token=...`: the browser's part of the address, which the dashboard turns
into a session and which no server or log ever sees.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import httpx

TOKEN_NAME = "make-dev-dashboard"
ADMIN_TOKEN_FILE = "admin-token"


def admin_token(workdir: Path) -> str:
    """The bootstrap token of this state directory (made once)."""
    path = workdir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def signed_in_link(dashboard: str, admin: str) -> str:
    """The dashboard's address signed in as the samples' owner; raises httpx.HTTPError if refused."""
    with httpx.Client(base_url=dashboard, headers={"Authorization": f"Bearer {admin}"}, timeout=15) as api:
        listed = api.get("/api/tokens", params={"limit": 100})
        listed.raise_for_status()
        for token in listed.json()["items"]:
            if token.get("name") == TOKEN_NAME:
                api.delete(f"/api/tokens/{token['id']}").raise_for_status()
        made = api.post("/api/tokens", json={"name": TOKEN_NAME})
        made.raise_for_status()
        return f"{dashboard}#token={made.json()['token']}"
