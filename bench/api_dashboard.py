"""``GET /api/dashboard``: one SQL statement vs three concurrent queries (a session each).

One api process (real uvicorn, uvloop + httptools) serves both variants side by side: the
production route ``/api/dashboard`` (:func:`chorus_api.domain.dashboard.load_dashboard`,
one round trip) and, added by this script only, ``/bench/dashboard-concurrent``
(:func:`load_dashboard_concurrently`, three sessions gathered). Before timing, both must
answer the same document for the same user. ``wrk`` loads them in turn
over several rounds at a fixed connection count, with the api's default pool (10 + 10
overflow), on a database with 1,000 users, 20,000 orders, 100,000 room messages and
30,000 notifications. Errors (pool timeouts) are counted, not hidden. The api runs on one
core, Postgres, Redis and ``wrk`` on the other (``api_support``); the api's CPU time per
request is printed next to its throughput.

Run: ``.venv/bin/python bench/api_dashboard.py [--seconds 4] [--rounds 3] [--connections 16]
[--json-out PATH]`` (about 70 s; more on a busy machine). ``--json-out`` writes the bench
result contract: the single statement is "chorus", the three-session variant the "peer",
the ratio one / three (req/s; target >= 1x, the variant the api serves must not lose),
plus both latency distributions. The machine's cores are shared: absolute numbers are
noisy, the ratio less so.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path
from typing import Annotated, Any

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
from fastapi import APIRouter, Depends, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_api.deps import CurrentUserId
from chorus_api.domain.dashboard import (
    RECENT_NOTIFICATIONS,
    Dashboard,
    DashboardStats,
    DashboardUser,
)
from chorus_api.domain.errors import UserGoneError
from chorus_api.main import create_app
from chorus_api.resources import Resources
from chorus_api.schemas.dashboard import DashboardOut
from chorus_api.settings import ApiSettings
from chorus_common.server import run
from chorus_common.tokens import TokenService
from chorus_schema.models import Notification, Order, RoomMessage, User

SEED = """
INSERT INTO users (email, full_name, password_hash)
SELECT 'user' || g || '@example.com', 'User ' || g, 'x' FROM generate_series(1, 1000) g;
INSERT INTO orders (user_id, item, quantity, amount_cents, status)
SELECT u, 'item ' || o, 1 + o % 5, 100 * o,
       (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + o % 4]
  FROM generate_series(1, 1000) u, generate_series(1, 20) o;
INSERT INTO room_messages (room, stream_ms, stream_seq, type, sender, user_id, data, created_at)
SELECT 'room' || (m % 50), 1764300000000 + m, 0,
       CASE WHEN m % 10 = 0 THEN 'ai.done' ELSE 'message' END,
       (1 + m % 1000)::text, 1 + m % 1000, '{"message": "hello"}', now()
  FROM generate_series(1, 100000) m;
INSERT INTO notifications (user_id, type, data)
SELECT u, 'order.created', jsonb_build_object('order', jsonb_build_object('id', n))
  FROM generate_series(1, 1000) u, generate_series(1, 30) n;
ANALYZE;
"""
USER_ID = 500
PATHS = {"one statement": "/api/dashboard", "concurrent": "/bench/dashboard-concurrent"}
PEER = "three concurrent queries, one session each"


# -- the variant the api does not serve, mounted only in this benchmark's process ----------


async def _user(sessions: async_sessionmaker[AsyncSession], user_id: int) -> DashboardUser:
    async with sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise UserGoneError(user_id)
        return DashboardUser(user.id, user.email, user.full_name, user.created_at)


async def _stats(sessions: async_sessionmaker[AsyncSession], user_id: int) -> DashboardStats:
    orders = select(func.count()).where(Order.user_id == user_id).scalar_subquery()
    spent = (
        select(func.coalesce(func.sum(Order.amount_cents), 0))
        .where(Order.user_id == user_id, Order.status != "cancelled")
        .scalar_subquery()
    )
    messages = (
        select(func.count())
        .where(RoomMessage.user_id == user_id, RoomMessage.type == "message")
        .scalar_subquery()
    )
    async with sessions() as session:
        row = (await session.execute(select(orders, spent, messages))).one()
        return DashboardStats(int(row[0]), int(row[1]), int(row[2]))


async def _notifications(
    sessions: async_sessionmaker[AsyncSession], user_id: int
) -> list[dict[str, Any]]:
    query = (
        select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.id.desc())
        .limit(RECENT_NOTIFICATIONS)
    )
    async with sessions() as session:
        return [
            {
                "id": n.id,
                "type": n.type,
                "data": n.data,
                "created_at": n.created_at,
                "read_at": n.read_at,
            }
            for n in await session.scalars(query)
        ]


async def load_dashboard_concurrently(
    sessions: async_sessionmaker[AsyncSession], *, user_id: int
) -> Dashboard:
    """The dashboard as three concurrent queries, each in a session of its own."""
    user, stats, notifications = await asyncio.gather(
        _user(sessions, user_id), _stats(sessions, user_id), _notifications(sessions, user_id)
    )
    return Dashboard(user=user, stats=stats, notifications=notifications)


async def _read_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    resources: Resources = request.app.state.resources
    return resources.read_sessions


router = APIRouter()


@router.get("/bench/dashboard-concurrent")
async def concurrent(
    user_id: CurrentUserId,
    sessions: Annotated[async_sessionmaker[AsyncSession], Depends(_read_sessions)],
) -> DashboardOut:
    """Three queries at once, a session each."""
    board = await load_dashboard_concurrently(sessions, user_id=user_id)
    return DashboardOut.model_validate(board, from_attributes=True)


def check_variants_agree(base_url: str, token: str) -> None:
    """Both routes answer the same document (the benchmark compares only their speed)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, trust_env=False) as client:
        one, three = (client.get(path).json() for path in PATHS.values())

    def essence(board: dict[str, Any]) -> tuple[object, ...]:
        # JSONB renders the notifications' timestamps itself: compare what they say.
        notes = [(n["id"], n["type"], n["data"]) for n in board["notifications"]]
        return board["user"], board["stats"], notes

    if essence(one) != essence(three):
        msg = f"the dashboard variants disagree:\n{one}\n{three}"
        raise SystemExit(msg)


def serve(port: int) -> None:
    """The api with the concurrent variant mounted next to the real route."""
    settings = ApiSettings(port=port)
    app = create_app(settings)
    app.include_router(router)
    run(app, settings)


def main() -> None:
    """Run the benchmark and print both variants and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json-out", type=Path, help="write the bench result contract here")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    token = TokenService(secret=JWT_SECRET, issuer="chorus").issue(USER_ID)
    paths = PATHS
    runs: dict[str, list[Measured]] = {name: [] for name in paths}
    load_before = load_average()
    with infrastructure("api-dashboard-bench") as infra:
        run_sql(infra.dsn, SEED)
        port = free()
        argv = python(__file__, "--serve", str(port))
        with process("api", argv, api_env(infra, port), port, infra.workdir) as api:
            check_variants_agree(f"http://127.0.0.1:{port}", token)
            for path in paths.values():
                measure(api, path, token=token, seconds=2, connections=args.connections)
            for round_ in range(args.rounds):
                order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
                for name in order:
                    run = measure(
                        api,
                        paths[name],
                        token=token,
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                    runs[name].append(run)
                    print(
                        f"round {round_ + 1}: {name:<13} {run.load.rps:8.1f} req/s  "
                        f"{run.cpu_us_per_request:6.0f} us CPU/request  "
                        f"mean {run.load.mean_latency_ms:6.1f} ms  errors {run.load.errors}",
                        flush=True,
                    )
    load_after = load_average()
    rps = {name: [r.load.rps for r in rs] for name, rs in runs.items()}
    cpu = {name: [r.cpu_us_per_request for r in rs] for name, rs in runs.items()}
    ratios = [a / b for a, b in zip(rps["one statement"], rps["concurrent"], strict=True)]
    print(
        f"\nGET /api/dashboard ({args.connections} connections, {args.seconds}s x "
        f"{args.rounds} rounds, load avg {load_before} before / {load_after} after; api on "
        f"CPU {SERVER_CPU}, Postgres + Redis + wrk on CPU "
        f"{','.join(map(str, sorted(LOAD_CPUS)))}; median [min-max])"
    )
    for name, rs in runs.items():
        print(
            f"  {name:<13} {spread(rps[name]):>20} req/s  "
            f"{spread([r.cpu_us_per_request for r in rs]):>18} us CPU/request  "
            f"mean latency {spread([r.load.mean_latency_ms for r in rs], '{:.1f}')} ms  "
            f"errors {sum(r.load.errors for r in rs)}"
        )
    print(
        f"  one statement / concurrent: {spread(ratios, '{:.2f}')}x\n"
        "  note: 2 cores shared with other work; numbers are noisy, the ratios less so."
    )
    if args.json_out:
        _write_json(args, runs, rps, cpu, ratios, load_before, load_after)


def _write_json(
    args: argparse.Namespace,
    runs: dict[str, list[Measured]],
    rps: dict[str, list[float]],
    cpu: dict[str, list[float]],
    ratios: list[float],
    load_before: str,
    load_after: str,
) -> None:
    """The bench result contract: one statement (chorus) vs three sessions (peer)."""
    one, three = runs["one statement"], runs["concurrent"]
    errors = {name: sum(r.load.errors for r in rs) for name, rs in runs.items()}
    write_result(
        args.json_out,
        bench="api_dashboard",
        cpu_split=cpu_split(
            f"; both variants served by the same api process, loaded in turn (load avg "
            f"{load_before} before, {load_after} after)"
        ),
        rows=[
            row(
                f"GET /api/dashboard req/s ({args.connections} connections, default pool)",
                peer=PEER,
                peer_values=rps["concurrent"],
                chorus_values=rps["one statement"],
                unit="req/s",
                ratios=ratios,
                target=">= 1x",
                met=statistics.median(ratios) >= 1,
                note=(
                    f"median of {args.rounds} alternating {args.seconds} s rounds; error "
                    f"responses (pool timeouts): one statement {errors['one statement']}, "
                    f"three sessions {errors['concurrent']}"
                ),
            ),
            row(
                "GET /api/dashboard api CPU per request",
                peer=PEER,
                peer_values=cpu["concurrent"],
                chorus_values=cpu["one statement"],
                unit="us",
                ratios=[
                    a / b for a, b in zip(cpu["one statement"], cpu["concurrent"], strict=True)
                ],
                target="<= 1x",
                met=statistics.median(cpu["one statement"]) <= statistics.median(cpu["concurrent"]),
            ),
        ],
        distributions=[
            {
                "title": f"GET /api/dashboard latency, {args.connections} connections",
                "unit": "ms",
                "series": {
                    PEER: _samples(three),
                    "chorus api: one statement": _samples(one),
                },
            }
        ],
    )
    print(f"  wrote {args.json_out}")


def _samples(runs: list[Measured], limit: int = 5000) -> list[float]:
    """Every run's latency quantiles, thinned evenly to at most ``limit`` samples."""
    samples = [ms for run in runs for ms in run.load.latency_ms]
    step = max(1, -(-len(samples) // limit))
    return [round(ms, 3) for ms in samples[::step]]


if __name__ == "__main__":
    main()
