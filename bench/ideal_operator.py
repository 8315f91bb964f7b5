"""The floor of any operator of this product: a process that does nothing but what every operator
must. It watches the Executions of one namespace and the Jobs and Pods the operator labels (as the
operator does: its runs' outcomes come from them), and for each new Execution sends the operator's own
Job and status patch (its builders, its hot path: bench/__main__.py `operator_writes`). No kopf, no
decisions, no state, no retries: events are decoded (msgspec) and, for Jobs and Pods, dropped.

    python -m bench.ideal_operator KUBECONFIG NAMESPACE

Prints `ready` once its three watches are open, then runs until killed. `python -m bench` runs it as
a phase of each round, the way it runs the operator, and prints the operator's time against it: what
the operator's watching and deciding cost above what watching costs at all.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
from lightkube import KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.resources.core_v1 import Pod

from agentry_common import constants as c
from agentry_operator.controller.wire import collection

from .runs import EXECUTIONS, JOBS, operator_writes, start_run, wire_for

Event = dict[str, Any]
CONCURRENCY = 32  # the bench's, and within the operator's own limits


async def _watch(
    session: aiohttp.ClientSession, url: str, opened: asyncio.Event, on: Callable[[Event], None]
) -> None:
    """One watch from now on: each event decoded and handed to `on`."""
    decoder = msgspec.json.Decoder()
    params = {"watch": "true", "allowWatchBookmarks": "true"}
    async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=None)) as answer:
        answer.raise_for_status()
        opened.set()
        async for line in answer.content:
            on(decoder.decode(line))


async def _run(kubeconfig: str, ns: str) -> None:
    config = KubeConfig.from_file(kubeconfig)
    single = config.get()
    if single is None or single.user is None:
        raise SystemExit("the kubeconfig has no current context with a user")
    ssl = verify_cluster(single.cluster, single.user, single.abs_file)
    started: set[str] = set()
    runs: set[asyncio.Task[None]] = set()
    ours = f"?labelSelector={c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
    async with (
        wire_for(config, CONCURRENCY) as wire,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl)) as session,
    ):

        def on_execution(event: Event) -> None:
            if event["type"] != "ADDED":  # bookmarks carry no name
                return
            body = event["object"]
            name = body["metadata"]["name"]
            if name not in started:
                started.add(name)
                task = asyncio.create_task(start_run(wire, len(started), body, operator_writes))
                runs.add(task)
                task.add_done_callback(runs.discard)

        watches = [
            (collection(EXECUTIONS, ns), on_execution),
            (collection(JOBS, ns) + ours, lambda _: None),
            (collection(Pod, ns) + ours, lambda _: None),
        ]
        opened = [asyncio.Event() for _ in watches]
        tasks = [
            asyncio.create_task(_watch(session, wire.server + path, event, on))
            for (path, on), event in zip(watches, opened, strict=True)
        ]
        ready: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in opened)))
        pending: list[asyncio.Future[Any]] = [ready, *tasks]
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a watch refused before the others opened: its error
        if ready not in done:
            raise SystemExit("a watch ended before the others opened")
        print("ready", flush=True)
        await asyncio.gather(*tasks)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    asyncio.run(_run(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
