"""``GET /api/users/{id}``: the api vs a minimal raw asyncpg + Starlette endpoint.

Both contenders serve the same user (with 10 orders) from the same database, as separate
uvicorn processes (uvloop + httptools, one process each, pinned to the same core; Postgres,
Redis and ``wrk`` on the other — see ``api_support``), loaded in turn by ``wrk`` with a
fixed connection count over several rounds whose order alternates (peer first, then api
first...). The peer does the same work the api must do — verify the bearer token (same
JWT library, same secret, same claims required, and by default the same memory of verified
tokens, ``chorus_common.tokens.VerifiedTokens``), read the user and its orders with the
same SQL statement (one LEFT JOIN round trip, as the api's ``Reader`` does), answer the
same JSON document (checked before loading: both bodies must be equal) — and nothing else:
no framework, no dependency injection, no middleware, no logging, and no connection reset
on release (the api's read connections are not reset either). The api is the real thing
in its production configuration: FastAPI, the Reader's asyncpg pool, the request-id,
metrics and body-limit middleware, and JSON logs with the access log line on.

Printed per contender: requests per second and the server's CPU time per request
(``psutil``, over each run), as the median of the rounds with [min-max]; the ratio is the
median of the per-round ratios (each round loads both contenders back to back). The CPU
time per request is the steadier figure: when the peer does not fill its core (Postgres
and ``wrk`` share the other one), its req/s is bounded by them, not by itself, and the
req/s ratio flatters the api; the output says how busy each server's core was.

Run: ``.venv/bin/python bench/api_users.py [--seconds 4] [--rounds 5] [--connections 16]
[--json-out PATH]`` (about 90 s). ``--json-out`` writes the bench result contract (rows
and the latency distributions wrk measured: 1,000 evenly spaced quantiles per run). To see
where the api's CPU goes, run ``py-spy record -p <api pid>`` during a round. The machine's
cores are shared with other work: absolute numbers are noisy, the ratios less so.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from api_support import (
    JWT_SECRET,
    LOAD_CPUS,
    SERVER_CPU,
    Measured,
    api_env,
    cpu_split,
    free,
    infrastructure,
    load_average,
    measure,
    process,
    python,
    row,
    run_sql,
    spread,
    write_result,
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
#: Both contenders get this many Postgres connections (the api: in each of its pools), more
#: than wrk's connections, so neither waits on its pool (queue fairness under overload is
#: another benchmark).
POOL = 20
#: The api's statement (``chorus_api.domain.users``), as SQLAlchemy compiles it.
USER_WITH_ORDERS = """
SELECT users.id, users.email, users.full_name, users.created_at, orders.id AS order_id,
       orders.item, orders.quantity, orders.amount_cents, orders.status,
       orders.created_at AS order_created_at
  FROM users LEFT OUTER JOIN orders ON orders.user_id = users.id
 WHERE users.id = $1::BIGINT ORDER BY orders.id DESC
"""
PEER = "Starlette + raw asyncpg"
PEER_NO_MEMORY = "Starlette + raw asyncpg, JWT decoded per request"
TARGET_RATIO = 0.6


def serve_peer(port: int, dsn: str, *, remember_tokens: bool) -> None:
    """The peer: raw asyncpg behind a bare Starlette route, served by uvicorn."""
    import asyncpg  # noqa: PLC0415
    import orjson  # noqa: PLC0415
    import uvicorn  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from chorus_common.tokens import (  # noqa: PLC0415
        InvalidTokenError,
        TokenService,
        VerifiedTokens,
        bearer_token,
    )

    service = TokenService(secret=JWT_SECRET, issuer="chorus")
    # Like the api, remember verified tokens (the same helper), unless told not to.
    tokens = VerifiedTokens(service) if remember_tokens else service
    state: dict[str, Any] = {}

    async def keep_session(connection: asyncpg.Connection) -> None:
        """No reset on release: the peer leaves no session state behind, like the api."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        # asyncpg's default reset runs one more statement per request (``RESET ALL``,
        # ``UNLISTEN *``...) that the api's Reader does not (its connections are returned
        # as they are): without this the peer would do two round trips to the api's one.
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
            rows = await conn.fetch(USER_WITH_ORDERS, user_id)
        if not rows:
            return Response(status_code=404)
        first = rows[0]
        body = {
            "id": first["id"],
            "email": first["email"],
            "full_name": first["full_name"],
            "created_at": first["created_at"],
            "orders": [
                {
                    "id": r["order_id"],
                    "item": r["item"],
                    "quantity": r["quantity"],
                    "amount_cents": r["amount_cents"],
                    "status": r["status"],
                    "created_at": r["order_created_at"],
                }
                for r in rows
                if r["order_id"] is not None
            ],
        }
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
    """Run the benchmark; print req/s, CPU per request and the ratios; write the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--no-access-log", action="store_true", help="run the api with ACCESS_LOG=false"
    )
    parser.add_argument("--json-out", type=Path, help="write the bench result contract here")
    parser.add_argument(
        "--peer-verifies-every-token",
        action="store_true",
        help="the peer decodes the JWT on every request (the api remembers verified tokens)",
    )
    parser.add_argument("--serve-peer", nargs=2, metavar=("PORT", "DSN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        serve_peer(
            int(args.serve_peer[0]),
            args.serve_peer[1],
            remember_tokens=not args.peer_verifies_every_token,
        )
        return

    from chorus_common.tokens import TokenService  # noqa: PLC0415

    token = TokenService(secret=JWT_SECRET, issuer="chorus").issue(USER_ID)
    path = f"/api/users/{USER_ID}"
    results: dict[str, list[Measured]] = {"peer": [], "api": []}
    load_before = load_average()
    with infrastructure("api-users-bench") as infra:
        run_sql(infra.dsn, SEED)
        api_port, peer_port = free(), free()
        logs = infra.workdir
        api_environment = {
            **api_env(infra, api_port, access_log=not args.no_access_log),
            "DB_POOL_SIZE": str(POOL),
            "DB_MAX_OVERFLOW": "0",
            # The route under test reads through the Reader's pool: the same size.
            "DB_READ_POOL_SIZE": str(POOL),
        }
        with (
            process("api", python("-m", "chorus_api"), api_environment, api_port, logs) as api,
            process(
                "peer",
                python(
                    __file__,
                    "--serve-peer",
                    str(peer_port),
                    infra.dsn,
                    *(["--peer-verifies-every-token"] if args.peer_verifies_every_token else []),
                ),
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
    load_after = load_average()
    peer_name = PEER_NO_MEMORY if args.peer_verifies_every_token else PEER
    rps = {n: [r.load.rps for r in runs] for n, runs in results.items()}
    cpu = {n: [r.cpu_us_per_request for r in runs] for n, runs in results.items()}
    # How much of its core each server used: near 100% means it was its own bottleneck.
    busy = {
        n: [r.load.rps * r.cpu_us_per_request / 1e4 for r in runs] for n, runs in results.items()
    }
    ratios = [a / p for a, p in zip(rps["api"], rps["peer"], strict=True)]
    cpu_ratios = [a / p for a, p in zip(cpu["api"], cpu["peer"], strict=True)]
    access = "off" if args.no_access_log else "on"
    conditions = (
        f"{args.connections} connections, {args.seconds}s x {args.rounds} rounds, "
        f"load avg {load_before} before / {load_after} after"
    )
    print(
        f"\nGET /api/users/{{id}} ({conditions}; servers on CPU {SERVER_CPU}, Postgres + "
        f"Redis + wrk on CPU {','.join(map(str, sorted(LOAD_CPUS)))}; median [min-max])\n"
        f"  peer ({peer_name}):   {spread(rps['peer']):>20} req/s  "
        f"{spread(cpu['peer']):>16} us CPU/request  core busy {spread(busy['peer'])}%\n"
        f"  api  (access log {access:<3}):          {spread(rps['api']):>20} req/s  "
        f"{spread(cpu['api']):>16} us CPU/request  core busy {spread(busy['api'])}%\n"
        f"  ratio api/peer, req/s:            {spread(ratios, '{:.2f}')}x  "
        f"(target >= {TARGET_RATIO:.2f}x)\n"
        f"  ratio api/peer, CPU per request:  {spread(cpu_ratios, '{:.2f}')}x  "
        f"(<= {1 / TARGET_RATIO:.2f}x would give {TARGET_RATIO:.2f}x req/s with both "
        "servers CPU-bound)\n"
        "  note: 2 cores shared with other work; numbers are noisy, the ratios less so."
    )
    if args.json_out:
        rps_ratio = statistics.median(ratios)
        cpu_ratio = statistics.median(cpu_ratios)
        write_result(
            args.json_out,
            bench="api_users",
            cpu_split=cpu_split(f" (load avg {load_before} before, {load_after} after)"),
            rows=[
                row(
                    f"GET /api/users/{{id}} req/s ({args.connections} connections, "
                    f"access log {access})",
                    peer=peer_name,
                    peer_values=rps["peer"],
                    chorus_values=rps["api"],
                    unit="req/s",
                    ratios=ratios,
                    target=f">= {TARGET_RATIO}x",
                    met=rps_ratio >= TARGET_RATIO,
                    note=(
                        f"median of {args.rounds} alternating {args.seconds} s rounds; server "
                        f"core busy: peer {statistics.median(busy['peer']):.0f}%, api "
                        f"{statistics.median(busy['api']):.0f}% (a server well below 100% was "
                        "held back by something else: Postgres/wrk on the other core, or "
                        "other work on the machine; then trust the CPU-per-request row)"
                    ),
                ),
                row(
                    "GET /api/users/{id} server CPU per request",
                    peer=peer_name,
                    peer_values=cpu["peer"],
                    chorus_values=cpu["api"],
                    unit="us",
                    ratios=cpu_ratios,
                    target=f"<= {1 / TARGET_RATIO:.2f}x (0.6x req/s when CPU-bound)",
                    met=cpu_ratio <= 1 / TARGET_RATIO,
                    note="user + system CPU of the server process over each run / requests",
                ),
                row(
                    f"GET /api/users/{{id}} latency p50 ({args.connections} connections)",
                    peer=peer_name,
                    peer_values=[_quantile(r, 0.5) for r in results["peer"]],
                    chorus_values=[_quantile(r, 0.5) for r in results["api"]],
                    unit="ms",
                    ratios=[
                        _quantile(a, 0.5) / _quantile(p, 0.5)
                        for a, p in zip(results["api"], results["peer"], strict=True)
                    ],
                    target="",
                    met=None,
                    note="closed loop: latency follows throughput at a fixed connection count",
                ),
            ],
            distributions=[
                {
                    "title": f"GET /api/users/{{id}} latency, {args.connections} connections",
                    "unit": "ms",
                    "series": {
                        peer_name: _samples(results["peer"]),
                        f"chorus api (access log {access})": _samples(results["api"]),
                    },
                }
            ],
        )
        print(f"  wrote {args.json_out}")


def _quantile(run: Measured, q: float) -> float:
    """The run's latency quantile ``q`` (0-1) in ms, from wrk's evenly spaced quantiles."""
    samples: list[float] = run.load.latency_ms
    return samples[min(len(samples) - 1, int(q * len(samples)))]


def _samples(runs: list[Measured], limit: int = 5000) -> list[float]:
    """Every run's latency quantiles, thinned evenly to at most ``limit`` samples."""
    samples = [ms for run in runs for ms in run.load.latency_ms]
    step = max(1, -(-len(samples) // limit))
    return [round(ms, 3) for ms in samples[::step]]


if __name__ == "__main__":
    main()
