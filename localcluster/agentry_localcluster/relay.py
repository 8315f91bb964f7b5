"""A TCP relay: `python -m agentry_localcluster.relay --listen 127.0.0.1:8000 --to 10.96.12.34:80`.

`make dev` serves the in-cluster API and dashboard on localhost with it: the host reaches Service IPs
through kube-proxy's rules, so the relay survives API pod restarts (unlike `kubectl port-forward`,
which is tied to one pod) and carries HTTP, SSE and WebSocket alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _handle(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, host: str, port: int
) -> None:
    try:
        upstream_r, upstream_w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, TimeoutError):
        client_w.close()
        return
    await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
    for w in (client_w, upstream_w):
        w.close()


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def serve(listen: str, to: str) -> None:
    lhost, lport = _split(listen)
    thost, tport = _split(to)
    server = await asyncio.start_server(lambda r, w: _handle(r, w, thost, tport), lhost, lport)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Port 0 in --listen: the kernel picks a free port; this line reports the one it got.
    port = server.sockets[0].getsockname()[1]
    print(f"relaying {lhost}:{port} -> {to}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentry_localcluster.relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", required=True, help="host:port to listen on (port 0: any, printed)")
    parser.add_argument("--to", required=True, help="host:port to connect to")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.to))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
