"""``python -m chorus_worker``: the arq loop and its health/metrics port in one process."""

from __future__ import annotations

import asyncio
import signal

import uvloop

from chorus_common.server import DrainingServer, uvicorn_config
from chorus_worker.main import create_app
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.worker import build_worker


async def serve(settings: WorkerServiceSettings) -> None:
    """Run jobs and serve health until SIGTERM, then let running jobs finish."""
    app = create_app(settings)
    server = DrainingServer(
        uvicorn_config(app, settings),
        lifecycle=app.state.lifecycle,
        drain_seconds=0,
        own_signals=False,
    )
    worker = build_worker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    http = asyncio.create_task(server.serve())
    jobs = asyncio.create_task(worker.async_run())
    await stop.wait()
    await app.state.lifecycle.drain(0)
    worker.allow_pick_jobs = False
    await worker.close()
    jobs.cancel()
    server.should_exit = True
    await asyncio.gather(http, jobs, return_exceptions=True)


def main() -> None:
    """Entry point."""
    uvloop.run(serve(WorkerServiceSettings()))


if __name__ == "__main__":
    main()
