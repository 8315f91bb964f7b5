"""`python -m agentry_gateway`: serve the gateway with uvicorn (settings from AGENTRY_GATEWAY_*)."""

from __future__ import annotations

import uvicorn

from agentry_common.constants import SERVER_KEEP_ALIVE_SECONDS

from .settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        "agentry_gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="info",
        # Long streaming calls: let in-flight calls finish on SIGTERM (the Deployment's grace period).
        timeout_graceful_shutdown=60,
        timeout_keep_alive=SERVER_KEEP_ALIVE_SECONDS,  # outlasts its clients' idle connections
    )


if __name__ == "__main__":
    main()
