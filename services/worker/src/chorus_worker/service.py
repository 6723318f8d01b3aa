"""Running the worker process: the job loop and its HTTP port, and their shutdown.

On the first SIGTERM (or SIGINT) the process:

1. turns not-ready (``/readyz`` 503) and stops taking jobs at once;
2. lets running jobs finish for up to ``JOB_COMPLETION_WAIT`` seconds, then cancels the
   rest (arq puts them back in the queue, so another worker runs them again);
3. closes its clients (``on_shutdown``) and the HTTP port, and exits 0.

A second signal cancels running jobs at once. If the job loop dies on its own, the
process exits 1 so Kubernetes restarts it. The chart sets the pod's grace period above
``JOB_COMPLETION_WAIT``.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from chorus_common.server import DrainingServer, uvicorn_config
from chorus_worker.main import create_app
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport.worker import ChorusWorker, build_worker

__all__ = ["serve"]

logger = logging.getLogger("chorus.worker.service")


async def _stop(worker: ChorusWorker, wait: float, force: asyncio.Event) -> None:
    drain = asyncio.create_task(worker.drain(wait))
    forced = asyncio.create_task(force.wait())
    await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
    if not drain.done():
        logger.warning("second signal: cancelling running jobs now")
        await worker.drain(0)
        await drain
    forced.cancel()


async def serve(settings: WorkerServiceSettings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (0 after a clean drain)."""
    worker = build_worker(settings)
    app = create_app(settings, worker=worker)
    server = DrainingServer(
        uvicorn_config(app, settings),
        lifecycle=app.state.lifecycle,
        drain_seconds=0,
        own_signals=False,
    )
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    http = asyncio.create_task(server.serve(), name="http")
    jobs = asyncio.create_task(worker.async_run(), name="jobs")
    stopping = asyncio.create_task(stop.wait(), name="signal")
    await asyncio.wait({http, jobs, stopping}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if not stopping.done():
        failed = jobs if jobs.done() else http
        error = None if failed.cancelled() else failed.exception()
        logger.error("%s ended on its own: %r; exiting", failed.get_name(), error)
        status = 1
        stopping.cancel()
    else:
        logger.info(
            "shutting down: no new jobs; running ones get %ss", settings.job_completion_wait
        )

    worker.allow_pick_jobs = False  # before anyone can see the 503 below
    await app.state.lifecycle.drain(0)  # /readyz answers 503 from here on
    await _stop(worker, settings.job_completion_wait, force)
    await worker.close()  # cancels the loop, runs on_shutdown, closes the pool
    await asyncio.gather(jobs, return_exceptions=True)
    server.should_exit = True
    await asyncio.gather(http, return_exceptions=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    logger.info("stopped")
    return status
