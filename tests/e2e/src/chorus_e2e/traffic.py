"""A few minutes of everyday use, in seconds: what an operator's checks need to have seen.

The alert and dashboard checks read Prometheus; they need the system to have done its
usual work first — sign-ups, orders, chat, a streamed completion, jobs — whichever tests
ran before them, or none. :func:`everyday_use` does that work through the ingress, as
clients do, and :func:`scraped` waits until Prometheus has it.
"""

from __future__ import annotations

import os

import httpx
from openai import AsyncOpenAI

from chorus_client import RoomClient
from chorus_e2e.accounts import sign_up
from chorus_e2e.polling import eventually
from chorus_e2e.prometheus import Prometheus, has_number

__all__ = ["SEEN", "everyday_use", "scraped"]

#: What the work leaves in Prometheus, one series (or family) per service it went through.
SEEN = (
    'chorus_http_requests_total{job="chorus-api", route="/api/orders", status="201"}',
    'chorus_realtime_fanout_latency_seconds_count{job="chorus-realtime"}',
    'chorus_gateway_ttft_seconds_count{job="chorus-llm-gateway"}',
    'chorus_gateway_time_per_output_token_seconds_count{job="chorus-llm-gateway"}',
    'chorus_worker_jobs_succeeded_total{job="chorus-worker", function="send_welcome_email"}',
)


async def everyday_use(ingress: str) -> None:
    """Sign up, order, look at the dashboard, chat in a room, stream a completion."""
    async with httpx.AsyncClient(base_url=ingress, trust_env=False, timeout=15.0) as http:
        user = await sign_up(http, "everyday")
        for amount in (1200, 450):
            placed = await http.post(
                "/api/orders",
                json={"item": "tea", "quantity": 1, "amount_cents": amount},
                headers=user.auth,
            )
            assert placed.status_code == 201, placed.text
        for path in ("/api/orders", "/api/dashboard", "/api/users/me"):
            response = await http.get(path, headers=user.auth)
            assert response.status_code == 200, response.text

    room = f"everyday-{os.urandom(3).hex()}"
    async with RoomClient([ingress], room, user.token) as chat:
        await chat.wait_subscribed()
        for n in range(5):
            await chat.say(f"hello {n}")
        await chat.wait_for(lambda: len(chat.messages()) == 5)

    client = AsyncOpenAI(base_url=f"{ingress}/v1", api_key=user.token, max_retries=0)
    async with client:
        stream = await client.chat.completions.create(
            model="assistant",  # the model users may call (GATEWAY_USER_MODELS)
            messages=[{"role": "user", "content": "hello [mock tokens=8]"}],
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text


async def scraped(prometheus: Prometheus, *, rising: bool) -> None:
    """Wait until Prometheus shows the work of :func:`everyday_use`, in every service.

    Shown means counted and scraped twice (a series the work created is born with its first
    value); with ``rising``, also seen to grow between two scrapes, which ``rate()`` and so
    every dashboard panel need — a second round of use after the first was scraped.
    """
    for selector in SEEN:

        async def seen(series: str = selector) -> bool:
            if rising:
                return has_number(await prometheus.query(f"sum(rate({series}[1h])) > 0"))
            counted = await prometheus.query(f"sum({series}) > 0")
            samples = await prometheus.query(f"max(count_over_time({series}[1h])) >= 2")
            return has_number(counted) and has_number(samples)

        await eventually(seen, timeout=60, what=f"Prometheus to see {selector}")
