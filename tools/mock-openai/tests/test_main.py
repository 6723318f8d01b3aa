"""The command line, run as a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
from openai import OpenAI


def test_cli_serves_with_given_knobs() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chorus_mock_openai",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tokens",
            "3",
            "--model-list",
            "alpha,beta",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("chorus-mock-openai listening on http://127.0.0.1:")
        base_url = line.split()[-1]

        with OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0) as client:
            models = [model.id for model in client.models.list()]
            completion = client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "hi"}]
            )
        assert models == ["alpha", "beta"]
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 3
        assert httpx.get(base_url + "/healthz").json() == {"status": "ok"}

        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(timeout=10) in (0, -signal.SIGTERM)
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_cli_rejects_bad_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chorus_mock_openai", "--tokens", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode != 0
    assert "tokens" in result.stderr
