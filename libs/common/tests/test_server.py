"""The server drains on SIGTERM: not ready first, hooks run, then a clean exit 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import httpx

from chorus_devstack.ports import free_port

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    from chorus_common.app import create_service_app
    from chorus_common.server import run
    from chorus_common.settings import ServiceSettings

    settings = ServiceSettings(env="test", jwt_secret="s" * 40, host="127.0.0.1",
                               port=int(sys.argv[1]), drain_seconds=1.5, graceful_timeout=2)
    app = create_service_app(settings, title="t", version="0")

    async def hook(window: float) -> None:
        print("hook window", window, flush=True)

    app.state.lifecycle.add_drain_hook("probe", hook)
    run(app, settings)
    """
)


def test_sigterm_drains_then_exits_zero(tmp_path: object) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, trust_env=False) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server never became ready"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            # During the drain window the process still serves, but says it is not ready.
            deadline = time.monotonic() + 5
            while client.get("/readyz").status_code != 503:
                assert time.monotonic() < deadline, "readiness never flipped"
                time.sleep(0.02)
            body = client.get("/readyz").json()
            assert body["checks"]["draining"]["ok"] is False
            assert client.get("/healthz").status_code == 200
        output, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "hook window 1.5" in output
