"""Worker benchmark: no-op jobs/s and enqueue→start latency, our worker vs bare arq.

    .venv/bin/python bench/worker_jobs.py [--jobs 2500] [--samples 100] [--rounds 3]
        [--no-pin] [--json-out PATH]

Starts its own Redis, then runs one worker process at a time against it:

- **chorus**: the worker as ``python -m chorus_worker`` runs it (``serve``, defaults:
  keyspace wake-ups, the job policy and metrics around every job, the persistence cron
  running), with this benchmark's ``noop`` job registered next to the real ones
  (``--serve-chorus``: the worker ships no job that does nothing);
- **arq (same settings)**: a bare ``arq.worker.Worker`` with our ``MAX_JOBS``,
  ``POLL_DELAY``, ``KEEP_RESULT`` and job timeout;
- **arq (defaults)**: a bare worker as arq ships it (``poll_delay`` 0.5 s), for latency;
- **chorus (poll)**: ours with ``QUEUE_WAKEUP=poll`` — the fallback when Redis refuses
  keyspace events — for latency.

Throughput: ours and the same-settings arq worker run side by side, each on its own
queue, and take turns (``--rounds``, median reported): ``--jobs`` no-op jobs are written
to the queue in pipelined batches (arq's own job encoding) while the worker runs, timed
until none is left.

Latency and idle CPU: each worker alone with Redis. Latency: ``--samples`` jobs enqueued
one at a time with ``enqueue_job`` at random 0-50 ms gaps (arq's defaults: an eighth of
them, at least 12 — each costs its 0.5 s poll, and its lag, the poll less the gap, barely
varies); each job's start minus enqueue time comes from arq's stored result (ms
resolution). Idle CPU: the worker's and Redis' CPU time over 1.5 s with an empty queue
(printed, not a row). Every worker logs at WARNING (arq's two INFO lines per job would
otherwise be what is measured).

CPU split: with two or more CPUs, the worker under test is pinned to the last one and
Redis plus this script (the load generator) to the others (``--no-pin`` leaves placement
to the scheduler). Default run on a quiet 2-core machine, estimated: ~15 s of throughput
rounds (the two workers start side by side), ~20 s of latency sampling (arq's 0.5 s poll
dominates), ~10 s of idle CPU and start-ups: about a minute; several times that when the
machine is loaded.

``--json-out PATH`` writes the bench result contract (``make bench`` renders it): the
throughput row (median of the rounds, spread min to max, ratio = median of the per-round
ratios), the enqueue→start p50 rows (spread = p50 of each of ``--rounds`` consecutive
batches of the samples) and every worker's enqueue→start samples for the plots. The bare
arq workers use the workspace's own arq (the version our worker runs on), so no extra venv
is needed.

The machine may be shared (2 cores, other work running): numbers are noisy; compare ratios
from one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job, serialize_job

from chorus_common.queue import JOB_CODEC
from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.redis_server import RedisServer
from chorus_worker.settings import WorkerServiceSettings

QUEUE = "arq:queue"
SECRET = "bench-secret-that-is-long-enough-for-hs256-keys"


async def noop(ctx: dict[str, object]) -> None:
    """The benchmark's unit of work: a job that does nothing, for both workers."""


def serve_chorus() -> int:
    """Run our worker, as ``python -m chorus_worker`` does, plus ``noop`` (``--serve-chorus``)."""
    import uvloop  # noqa: PLC0415

    from chorus_worker.main import job_specs, serve  # noqa: PLC0415
    from chorus_worker.transport.policy import JobSpec  # noqa: PLC0415

    settings = WorkerServiceSettings()
    jobs = [
        *job_specs(settings),
        JobSpec(noop, max_tries=settings.max_tries, timeout=settings.job_timeout),
    ]
    return uvloop.run(serve(settings, jobs=jobs))


def serve_bare(
    redis_url: str,
    *,
    queue: str,
    poll_delay: float,
    max_jobs: int,
    keep_result: int,
    timeout: float,
) -> None:
    """Run a bare arq worker until SIGTERM (``--serve-bare``)."""
    import logging  # noqa: PLC0415

    from arq.connections import RedisSettings  # noqa: PLC0415
    from arq.worker import Worker  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING)
    Worker(
        functions=[noop],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=queue,
        poll_delay=poll_delay,
        max_jobs=max_jobs,
        keep_result=keep_result,
        job_timeout=timeout,
    ).run()


@dataclass
class Figures:
    """One worker's results."""

    name: str
    jobs_per_s: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    samples: int = 0
    lags_ms: list[float] = field(default_factory=list)
    idle_cpu: float | None = None
    idle_redis_cpu: float | None = None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def json_jobs(redis: ArqRedis) -> ArqRedis:
    """``redis`` encoding jobs as every Chorus producer does (``chorus_common.queue``)."""
    redis.job_serializer = JOB_CODEC["job_serializer"]
    redis.job_deserializer = JOB_CODEC["job_deserializer"]
    return redis


async def flush(redis: ArqRedis) -> None:
    await redis.flushdb()


async def wait_until_serving(redis: ArqRedis) -> None:
    """The worker's loop runs once a job enqueued now has finished."""
    job = await redis.enqueue_job("noop")
    assert job is not None
    deadline = time.monotonic() + 60
    while await job.result_info() is None:
        if time.monotonic() > deadline:
            msg = "the worker never ran a job"
            raise TimeoutError(msg)
        await asyncio.sleep(0.01)


async def throughput(redis: ArqRedis, jobs: int) -> float:
    """Jobs per second through the running worker, from the first write to an empty queue."""
    start = time.perf_counter()
    batch = 500
    last_score = 0
    for first in range(0, jobs, batch):
        async with redis.pipeline(transaction=False) as pipe:
            last_score = int(time.time() * 1000)
            for _ in range(min(batch, jobs - first)):
                job_id = uuid.uuid4().hex
                body = serialize_job(
                    "noop", (), {}, None, last_score, serializer=redis.job_serializer
                )
                pipe.psetex(f"arq:job:{job_id}", 86_400_000, body)
                pipe.zadd(redis.default_queue_name, {job_id: last_score})
            await pipe.execute()
    # Our jobs are done when none is left up to the last score written (a cron job the
    # worker scheduled for later does not count).
    while await redis.zcount(redis.default_queue_name, "-inf", last_score):
        await asyncio.sleep(0.005)
    return jobs / (time.perf_counter() - start)


async def latency(redis: ArqRedis, samples: int) -> list[float]:
    """Enqueue→start of ``samples`` jobs enqueued one at a time, in ms."""
    lags: list[float] = []
    rng = random.Random(4)
    for _ in range(samples):
        await asyncio.sleep(rng.uniform(0, 0.05))
        job = await redis.enqueue_job("noop")
        assert job is not None
        job_info = Job(job.job_id, redis, _deserializer=redis.job_deserializer)
        while (info := await job_info.result_info()) is None:
            await asyncio.sleep(0.002)
        lags.append((info.start_time - info.enqueue_time).total_seconds() * 1000)
    return lags


async def idle_cpu(pid: int, redis_pid: int, seconds: float = 1.5) -> tuple[float, float]:
    """CPU % of one core used by the worker and by Redis while nothing is queued."""
    before, redis_before = cpu_seconds(pid), cpu_seconds(redis_pid)
    await asyncio.sleep(seconds)
    return (
        (cpu_seconds(pid) - before) / seconds * 100,
        (cpu_seconds(redis_pid) - redis_before) / seconds * 100,
    )


PIN = {"enabled": True}


def cpu_plan() -> tuple[set[int], set[int]] | None:
    """(worker CPUs, Redis and load generator CPUs) when there are two or more to split."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not PIN["enabled"]:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def pin(pid: int, cpus: set[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


async def start(*workers: tuple[ManagedProcess, ArqRedis]) -> None:
    """Start the workers at once, each pinned to the worker CPU from the start, and wait
    until each serves its own queue; then let startup work (the cron's first runs) settle."""
    plan = cpu_plan()
    for process, _ in workers:
        process.start()
        assert process.pid is not None
        pin(process.pid, plan[0] if plan else None)
    await asyncio.gather(*(wait_until_serving(redis) for _, redis in workers))
    await asyncio.sleep(1)


async def profile(
    figures: Figures, process: ManagedProcess, redis: ArqRedis, redis_pid: int, samples: int
) -> Figures:
    """Idle CPU and latency of one worker, alone with Redis."""
    await redis.flushdb()
    await start((process, redis))
    try:
        assert process.pid is not None
        figures.idle_cpu, figures.idle_redis_cpu = await idle_cpu(process.pid, redis_pid)
        figures.lags_ms = await latency(redis, samples)
        lags = sorted(figures.lags_ms)
        figures.samples = len(lags)
        figures.p50_ms = statistics.median(lags)
        figures.p90_ms = lags[int(len(lags) * 0.9) - 1]
    finally:
        process.stop()
    return figures


async def race(
    ours: ManagedProcess,
    ours_queue: ArqRedis,
    bare: ManagedProcess,
    bare_queue: ArqRedis,
    *,
    jobs: int,
    rounds: int,
) -> tuple[list[float], list[float]]:
    """Throughput of both workers, each on its own queue, measured in alternation."""
    await ours_queue.flushdb()
    await start((ours, ours_queue), (bare, bare_queue))  # their start-ups overlap
    mine, theirs = [], []
    try:
        for _ in range(rounds):
            mine.append(await throughput(ours_queue, jobs))
            theirs.append(await throughput(bare_queue, jobs))
    finally:
        ours.stop()
        bare.stop()
    return mine, theirs


def chorus_process(redis_url: str, log_dir: Path, **env: str) -> ManagedProcess:
    port = free_port()
    return ManagedProcess(
        ProcessSpec(
            name=f"chorus-worker-{port}",
            argv=[sys.executable, __file__, "--serve-chorus"],
            env={
                "ENV": "dev",
                "JWT_SECRET": SECRET,
                "LOG_LEVEL": "WARNING",
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "REDIS_URL": redis_url,
                # noop touches no database; the engine connects lazily, so none runs here.
                "DATABASE_URL": "postgresql://bench@127.0.0.1:1/none",
                **env,
            },
        ),
        log_dir,
    )


def bare_process(
    redis_url: str,
    log_dir: Path,
    *,
    poll_delay: float,
    settings: WorkerServiceSettings,
    queue: str = QUEUE,
) -> ManagedProcess:
    return ManagedProcess(
        ProcessSpec(
            name=f"arq-{poll_delay}-{queue}",
            argv=[
                sys.executable,
                __file__,
                "--serve-bare",
                redis_url,
                "--queue",
                queue,
                "--poll-delay",
                str(poll_delay),
                "--max-jobs",
                str(settings.max_jobs),
                "--keep-result",
                str(settings.keep_result),
                "--timeout",
                str(settings.job_timeout),
            ],
        ),
        log_dir,
    )


def fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


async def main(jobs: int, samples: int, rounds: int, json_out: Path | None) -> None:
    settings = WorkerServiceSettings(env="dev")
    plan = cpu_plan()
    if plan is not None:
        pin(os.getpid(), plan[1])  # the load generator; Redis inherits it
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        root = Path(tmp)
        server = RedisServer(root / "redis", free_port())
        redis_process = ManagedProcess(server.spec(), root)
        redis_process.start()
        redis_process.wait_ready()
        # Chorus's worker reads JSON jobs only (chorus_common.queue); bare arq, its pickles.
        redis = ArqRedis.from_url(server.url)
        chorus_redis = json_jobs(ArqRedis.from_url(server.url))
        queues = {name: ArqRedis.from_url(server.url) for name in ("chorus", "arq")}
        json_jobs(queues["chorus"]).default_queue_name = "bench:chorus"
        queues["arq"].default_queue_name = "bench:arq"
        assert redis_process.pid is not None
        try:
            print(f"throughput: {rounds} rounds of {jobs} jobs each, alternating ...", flush=True)
            mine, theirs = await race(
                chorus_process(server.url, root, ARQ_QUEUE_NAME="bench:chorus"),
                queues["chorus"],
                bare_process(
                    server.url,
                    root,
                    poll_delay=settings.poll_delay,
                    settings=settings,
                    queue="bench:arq",
                ),
                queues["arq"],
                jobs=jobs,
                rounds=rounds,
            )
            poll = f"{settings.poll_delay:g}s"
            runs = [
                (Figures("chorus"), chorus_process(server.url, root), samples, chorus_redis),
                (
                    Figures(f"arq, same settings (poll {poll})"),
                    bare_process(
                        server.url, root, poll_delay=settings.poll_delay, settings=settings
                    ),
                    samples,
                    redis,
                ),
                (
                    Figures("arq, defaults (poll 0.5s)"),
                    bare_process(server.url, root, poll_delay=0.5, settings=settings),
                    # Its lag is its 0.5 s poll less the 0-50 ms gap, job after job (a
                    # spread of a few ms), and each sample costs that half second.
                    max(12, samples // 8),
                    redis,
                ),
                (
                    Figures(f"chorus, QUEUE_WAKEUP=poll ({poll})"),
                    chorus_process(server.url, root, QUEUE_WAKEUP="poll"),
                    samples,
                    chorus_redis,
                ),
            ]
            results = []
            for figures, process, n_samples, client in runs:
                print(f"latency and idle CPU: {figures.name} ...", flush=True)
                results.append(
                    await profile(figures, process, client, redis_process.pid, n_samples)
                )
        finally:
            for client in (redis, chorus_redis, *queues.values()):
                await client.aclose()
            redis_process.stop()

    results[0].jobs_per_s = statistics.median(mine)
    results[1].jobs_per_s = statistics.median(theirs)
    print()
    print(f"throughput: median of {rounds} alternating rounds of {jobs} no-op jobs")
    print("  chorus:", ", ".join(f"{x:.0f}" for x in mine), "jobs/s")
    print("  arq:   ", ", ".join(f"{x:.0f}" for x in theirs), "jobs/s")
    print("latency: enqueue_job to start (arq's stored times, 1 ms resolution)")
    header = f"{'worker':<36} {'jobs/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'n':>4}"
    print(header + f" {'idle CPU':>9} {'Redis CPU':>10}")
    for r in results:
        print(
            f"{r.name:<36} {fmt(r.jobs_per_s, '{:.0f}'):>8} {fmt(r.p50_ms, '{:.1f}'):>8} "
            f"{fmt(r.p90_ms, '{:.1f}'):>8} {r.samples:>4} {fmt(r.idle_cpu, '{:.2f}%'):>9} "
            f"{fmt(r.idle_redis_cpu, '{:.2f}%'):>10}"
        )
    ours, same, defaults, _ = results
    assert ours.jobs_per_s is not None
    assert same.jobs_per_s is not None
    assert ours.p50_ms is not None
    assert same.p50_ms is not None
    assert defaults.p50_ms is not None
    ratio = statistics.median(m / t for m, t in zip(mine, theirs, strict=True))
    best = max(ours.p50_ms, 1.0)  # 1 ms resolution
    print()
    print(f"throughput  chorus / arq (same settings): {ratio:.2f}x per round, median")
    print("            (targets: >= 0.9x and >= 1000 jobs/s)")
    print(f"p50 latency arq (same settings) / chorus:  {same.p50_ms / best:.0f}x")
    print(f"p50 latency arq (defaults) / chorus:       {defaults.p50_ms / best:.0f}x")
    print(f"p50 latency chorus: {ours.p50_ms:.1f} ms (target <= 25 ms)")
    print("2 shared CPU cores with other work running: figures are noisy; compare within a run.")
    if json_out is not None:
        result = contract_result(
            results, mine, theirs, jobs=jobs, rounds=rounds, settings=settings, plan=plan
        )
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_out}")


def spread(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def batch_p50s(lags: list[float], batches: int) -> list[float]:
    """p50 of each of ``batches`` consecutive slices of the samples (in enqueue order)."""
    size = max(1, len(lags) // max(1, batches))
    chunks = [lags[i : i + size] for i in range(0, len(lags), size)]
    if len(chunks) > 1 and len(chunks[-1]) < size:  # fold a short remainder into the last
        chunks[-2].extend(chunks.pop())
    return [statistics.median(chunk) for chunk in chunks]


def latency_row(
    figure: str, ours: Figures, peer: Figures, rounds: int, *, target: str, met: bool | None
) -> dict[str, Any]:
    assert ours.p50_ms is not None
    assert peer.p50_ms is not None
    return {
        "figure": figure,
        "peer": peer.name,
        "peer_value": peer.p50_ms,
        "peer_spread": spread(batch_p50s(peer.lags_ms, rounds)),
        "chorus": ours.p50_ms,
        "chorus_spread": spread(batch_p50s(ours.lags_ms, rounds)),
        "unit": "ms",
        "ratio": ours.p50_ms / peer.p50_ms if peer.p50_ms > 0 else None,
        "target": target,
        "met": met,
        "note": (
            f"{ours.name}: {ours.samples} jobs, {peer.name}: {peer.samples}, enqueued one at a "
            "time at random 0-50 ms gaps; arq's stored enqueue/start times (1 ms resolution); "
            f"spread = p50 of each of {rounds} consecutive batches"
        ),
    }


def contract_result(
    results: list[Figures],
    mine: list[float],
    theirs: list[float],
    *,
    jobs: int,
    rounds: int,
    settings: WorkerServiceSettings,
    plan: tuple[set[int], set[int]] | None,
) -> dict[str, Any]:
    """The bench result contract (see bench/run.py) for this run."""
    ours, same, defaults, poll_mode = results
    ratio = statistics.median(m / t for m, t in zip(mine, theirs, strict=True))
    chorus_rate = statistics.median(mine)
    if plan is None:
        cpu_split = (
            "Not pinned (one CPU available, or --no-pin): the worker under test, Redis and "
            "this script (the load generator) share the machine's CPUs as the scheduler sees "
            "fit; the machine is shared with other work."
        )
    else:
        workers, others = plan
        cpu_split = (
            f"The worker under test (chorus or bare arq, one process each) on CPU "
            f"{','.join(map(str, sorted(workers)))}; Redis and this script (the load "
            f"generator: pipelined enqueues, result polling) on CPU "
            f"{','.join(map(str, sorted(others)))}; the machine is shared with other work."
        )
    return {
        "bench": "worker_jobs",
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "cpu_split": cpu_split,
        "rows": [
            {
                "figure": "No-op jobs/s, one worker process",
                "peer": same.name,
                "peer_value": statistics.median(theirs),
                "peer_spread": spread(theirs),
                "chorus": chorus_rate,
                "chorus_spread": spread(mine),
                "unit": "jobs/s",
                "ratio": ratio,
                "target": ">= 0.9x and >= 1,000 jobs/s",
                "met": ratio >= 0.9 and chorus_rate >= 1000,
                "note": (
                    f"median of {rounds} alternating rounds of {jobs} no-op jobs written in "
                    f"pipelined batches; both workers running (max_jobs {settings.max_jobs}), "
                    "each on its own queue; ratio = median of the per-round ratios"
                ),
            },
            latency_row(
                "Job enqueue→start p50",
                ours,
                defaults,
                rounds,
                target="<= 25 ms",
                met=ours.p50_ms is not None and ours.p50_ms <= 25,
            ),
            latency_row(
                "Job enqueue→start p50, same poll delay",
                ours,
                same,
                rounds,
                target="(context: no target)",
                met=None,
            ),
            latency_row(
                "Job enqueue→start p50, QUEUE_WAKEUP=poll",
                poll_mode,
                same,
                rounds,
                target="(context: no target)",
                met=None,
            ),
        ],
        "distributions": [
            {
                "title": "Job enqueue→start latency (one job at a time, 1 ms resolution)",
                "unit": "ms",
                "series": {r.name: r.lags_ms[:5000] for r in results if r.lags_ms},
            }
        ],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2_500)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queue", default=QUEUE)
    parser.add_argument("--serve-bare", metavar="REDIS_URL")
    parser.add_argument("--serve-chorus", action="store_true")
    parser.add_argument("--poll-delay", type=float, default=0.5)
    parser.add_argument("--max-jobs", type=int, default=10)
    parser.add_argument("--keep-result", type=int, default=3600)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--no-pin", action="store_true", help="leave CPU placement to the scheduler"
    )
    parser.add_argument("--json-out", type=Path, help="write the bench result contract here")
    args = parser.parse_args()
    if args.serve_chorus:
        sys.exit(serve_chorus())
    if args.serve_bare:
        serve_bare(
            args.serve_bare,
            queue=args.queue,
            poll_delay=args.poll_delay,
            max_jobs=args.max_jobs,
            keep_result=args.keep_result,
            timeout=args.timeout,
        )
    else:
        PIN["enabled"] = not args.no_pin
        asyncio.run(main(args.jobs, args.samples, args.rounds, args.json_out))
