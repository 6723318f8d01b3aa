"""``GET /api/users/{id}``: the api vs a minimal raw asyncpg + Starlette endpoint.

Both contenders serve the same user (with 10 orders) from the same database, as separate
uvicorn processes (uvloop + httptools, one process each), loaded in turn by ``wrk`` with a
fixed connection count over several alternating rounds. The peer does the same work the
api must do — verify the bearer token (same JWT library, same secret), read the user row
and its orders with two queries, answer JSON — and nothing else: no ORM, no validation
layer, no middleware. The api is the real thing: FastAPI, SQLAlchemy ORM with
``selectinload``, pydantic, and the request-id, metrics and body-limit middleware.

Run: ``.venv/bin/python bench/api_users.py [--seconds 10] [--rounds 3] [--connections 32]``.
The machine's cores are shared: absolute numbers are noisy, the ratio less so.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import asynccontextmanager
from typing import Any

from api_support import (
    JWT_SECRET,
    api_env,
    free,
    infrastructure,
    process,
    python,
    run_sql,
    wrk,
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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL)
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


def main() -> None:
    """Run the benchmark and print req/s and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve-peer", nargs=2, metavar=("PORT", "DSN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        serve_peer(int(args.serve_peer[0]), args.serve_peer[1])
        return

    from chorus_common.tokens import TokenService  # noqa: PLC0415

    token = TokenService(secret=JWT_SECRET, issuer="chorus").issue(USER_ID)
    with infrastructure("api-users-bench") as infra:
        run_sql(infra.dsn, SEED)
        api_port, peer_port = free(), free()
        logs = infra.workdir
        with (
            process(
                "api",
                python("-m", "chorus_api"),
                {**api_env(infra, api_port), "DB_POOL_SIZE": str(POOL), "DB_MAX_OVERFLOW": "0"},
                api_port,
                logs,
            ) as api,
            process(
                "peer",
                python(__file__, "--serve-peer", str(peer_port), infra.dsn),
                api_env(infra, peer_port),
                peer_port,
                logs,
            ) as peer,
        ):
            targets = {"api": f"{api}/api/users/{USER_ID}", "peer": f"{peer}/api/users/{USER_ID}"}
            for url in targets.values():  # warm-up: pools, prepared statements, caches
                wrk(url, token=token, seconds=2, connections=args.connections)
            results: dict[str, list[float]] = {name: [] for name in targets}
            for round_ in range(args.rounds):
                for name, url in targets.items():
                    load = wrk(url, token=token, seconds=args.seconds, connections=args.connections)
                    if load.errors:
                        msg = f"{name}: {load.errors} error responses"
                        raise RuntimeError(msg)
                    rps = load.rps
                    results[name].append(rps)
                    print(f"round {round_ + 1}: {name:<4} {rps:9.1f} req/s", flush=True)
    api_rps, peer_rps = (statistics.median(results[n]) for n in ("api", "peer"))
    print(
        f"\nGET /api/users/{{id}} ({args.connections} connections, {args.seconds}s x "
        f"{args.rounds} rounds, median)\n"
        f"  api  (FastAPI + SQLAlchemy ORM): {api_rps:9.1f} req/s\n"
        f"  peer (Starlette + raw asyncpg):  {peer_rps:9.1f} req/s\n"
        f"  ratio api/peer: {api_rps / peer_rps:.2f}x  (target >= 0.60x)\n"
        "  note: 2 shared cores, other work on the machine; numbers are noisy."
    )


if __name__ == "__main__":
    main()
