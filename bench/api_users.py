"""``GET /api/users/{id}``: the api vs a minimal raw asyncpg + Starlette endpoint.

Both contenders serve the same user (with 10 orders) from the same database, as separate
uvicorn processes (uvloop + httptools, one process each, pinned to the same core; Postgres,
Redis and ``wrk`` on the other — see ``api_support``), loaded in turn by ``wrk`` with a
fixed connection count over several rounds whose order alternates (peer first, then api
first...). The peer does the same work the api must do — verify the bearer token (same
JWT library, same secret, same claims required), read the user row and its orders in two
round trips, answer the same JSON document (checked before loading: both bodies must be
equal) — and nothing else: no ORM, no validation layer, no middleware, no logging, and no
connection reset on release (the api's read connections are not reset either). The api is
the real thing in its production configuration: FastAPI, SQLAlchemy, pydantic, the
request-id, metrics and body-limit middleware, and JSON logs with the access log line on.

Printed per contender: requests per second and the server's CPU time per request
(``psutil``, over each run), as the median of the rounds with [min-max]; the ratio is the
median of the per-round ratios (each round loads both contenders back to back).

Run: ``.venv/bin/python bench/api_users.py [--seconds 8] [--rounds 5] [--connections 16]``.
The machine's cores are shared with other work: absolute numbers are noisy, the ratios
and the CPU time per request much less so.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from api_support import (
    JWT_SECRET,
    LOAD_CPUS,
    SERVER_CPU,
    Measured,
    api_env,
    free,
    infrastructure,
    measure,
    process,
    python,
    run_sql,
    spread,
)

SEED = """
INSERT INTO users (email, full_name, password_hash)
SELECT 'user' || g || '@example.com', 'User ' || g, 'x' FROM generate_series(1, 1000) g;
INSERT INTO orders (user_id, item, quantity, amount_cents, status)
SELECT u, 'item ' || o, 1 + o % 5, 100 * o,
       (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + o % 4]
  FROM generate_series(1, 1000) u, generate_series(1, 10) o;
ANALYZE;
"""
USER_ID = 500
#: Both contenders get this many Postgres connections, more than wrk's connections, so
#: neither waits on its pool (queue fairness under overload is another benchmark).
POOL = 20


def serve_peer(port: int, dsn: str) -> None:
    """The peer: raw asyncpg behind a bare Starlette route, served by uvicorn."""
    import asyncpg  # noqa: PLC0415
    import orjson  # noqa: PLC0415
    import uvicorn  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from chorus_common.tokens import InvalidTokenError, TokenService, bearer_token  # noqa: PLC0415

    tokens = TokenService(secret=JWT_SECRET, issuer="chorus")
    state: dict[str, Any] = {}

    async def keep_session(connection: asyncpg.Connection) -> None:
        """No reset on release: the peer leaves no session state behind, like the api."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        # asyncpg's default reset runs one more statement per request (``RESET ALL``,
        # ``UNLISTEN *``...) that the api's pool does not (its read connections are in
        # autocommit and returned as they are): without this the peer would do three
        # round trips to the api's two.
        state["pool"] = await asyncpg.create_pool(
            dsn, min_size=POOL, max_size=POOL, reset=keep_session
        )
        yield
        await state["pool"].close()

    async def user(request: Request) -> Response:
        try:
            claims = tokens.verify(bearer_token(request.headers.get("authorization")) or "")
        except InvalidTokenError:
            return Response(status_code=401)
        user_id = int(request.path_params["user_id"])
        if int(claims.subject) != user_id:
            return Response(status_code=404)
        async with state["pool"].acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, email, full_name, created_at FROM users WHERE id = $1", user_id
            )
            if row is None:
                return Response(status_code=404)
            orders = await conn.fetch(
                "SELECT id, item, quantity, amount_cents, status, created_at FROM orders"
                " WHERE user_id = $1 ORDER BY id DESC",
                user_id,
            )
        body = {**dict(row), "orders": [dict(o) for o in orders]}
        return Response(orjson.dumps(body), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    app = Starlette(
        routes=[Route("/api/users/{user_id:int}", user), Route("/readyz", ready)],
        lifespan=lifespan,
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def _normalised(body: Any) -> Any:
    """A response body with timestamps parsed (``Z`` and ``+00:00`` are the same instant)."""
    if isinstance(body, Mapping):
        return {k: _normalised(v) for k, v in body.items()}
    if isinstance(body, list):
        return [_normalised(v) for v in body]
    if isinstance(body, str) and len(body) >= 19 and body[10:11] == "T":
        return datetime.fromisoformat(body)
    return body


def check_same_body(urls: Mapping[str, str], token: str) -> None:
    """Both contenders must answer the same JSON document, or the comparison means nothing."""
    bodies = {}
    for name, url in urls.items():
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)
        response.raise_for_status()
        bodies[name] = _normalised(response.json())
    first, *others = bodies.values()
    if any(other != first for other in others):
        msg = f"the contenders answer different bodies: {bodies}"
        raise RuntimeError(msg)
    if not first["orders"]:
        msg = "the benchmark user has no orders"
        raise RuntimeError(msg)


def main() -> None:
    """Run the benchmark and print req/s, CPU per request and the ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--no-access-log", action="store_true", help="run the api with ACCESS_LOG=false"
    )
    parser.add_argument("--serve-peer", nargs=2, metavar=("PORT", "DSN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        serve_peer(int(args.serve_peer[0]), args.serve_peer[1])
        return

    from chorus_common.tokens import TokenService  # noqa: PLC0415

    token = TokenService(secret=JWT_SECRET, issuer="chorus").issue(USER_ID)
    path = f"/api/users/{USER_ID}"
    results: dict[str, list[Measured]] = {"peer": [], "api": []}
    with infrastructure("api-users-bench") as infra:
        run_sql(infra.dsn, SEED)
        api_port, peer_port = free(), free()
        logs = infra.workdir
        api_environment = {
            **api_env(infra, api_port, access_log=not args.no_access_log),
            "DB_POOL_SIZE": str(POOL),
            "DB_MAX_OVERFLOW": "0",
        }
        with (
            process("api", python("-m", "chorus_api"), api_environment, api_port, logs) as api,
            process(
                "peer",
                python(__file__, "--serve-peer", str(peer_port), infra.dsn),
                api_env(infra, peer_port),
                peer_port,
                logs,
            ) as peer,
        ):
            servers = {"peer": peer, "api": api}
            check_same_body({n: f"{s.url}{path}" for n, s in servers.items()}, token)
            for server in servers.values():  # warm-up: pools, prepared statements, caches
                measure(server, path, token=token, seconds=2, connections=args.connections)
            for round_ in range(args.rounds):
                order = ["peer", "api"] if round_ % 2 == 0 else ["api", "peer"]
                for name in order:
                    run = measure(
                        servers[name],
                        path,
                        token=token,
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                    if run.load.errors:
                        msg = f"{name}: {run.load.errors} error responses"
                        raise RuntimeError(msg)
                    results[name].append(run)
                    print(
                        f"round {round_ + 1}: {name:<4} {run.load.rps:8.1f} req/s  "
                        f"{run.cpu_us_per_request:6.0f} us CPU/request  "
                        f"mean latency {run.load.mean_latency_ms:5.1f} ms",
                        flush=True,
                    )
    rps = {n: [r.load.rps for r in runs] for n, runs in results.items()}
    cpu = {n: [r.cpu_us_per_request for r in runs] for n, runs in results.items()}
    ratios = [a / p for a, p in zip(rps["api"], rps["peer"], strict=True)]
    cpu_ratios = [p / a for a, p in zip(cpu["api"], cpu["peer"], strict=True)]
    access = "off" if args.no_access_log else "on"
    print(
        f"\nGET /api/users/{{id}} ({args.connections} connections, {args.seconds}s x "
        f"{args.rounds} rounds; servers on CPU {SERVER_CPU}, Postgres + Redis + wrk on CPU "
        f"{','.join(map(str, sorted(LOAD_CPUS)))}; median [min-max])\n"
        f"  peer (Starlette + raw asyncpg):   {spread(rps['peer']):>20} req/s  "
        f"{spread(cpu['peer']):>16} us CPU/request\n"
        f"  api  (access log {access:<3}):          {spread(rps['api']):>20} req/s  "
        f"{spread(cpu['api']):>16} us CPU/request\n"
        f"  ratio api/peer, req/s:            {spread(ratios, '{:.2f}')}x  (target >= 0.60x)\n"
        f"  ratio peer/api, CPU per request:  {spread(cpu_ratios, '{:.2f}')}x\n"
        "  note: 2 cores shared with other work; numbers are noisy, the ratios less so."
    )


if __name__ == "__main__":
    main()
