"""The runner's own API, on the machine's loopback: what ``kubectl get``/``logs``/``proxy`` give.

- ``GET /status``: the release's phase, workloads, pods (container states, restarts,
  events), the outside servers and notes;
- ``GET /pods/{pod}/logs?container=…&lines=…``: a container's log (every run);
- ``GET /pods/{pod}/proxy/{port}/{path}``: a GET to the pod's own address, from the node
  (as the API server's pod proxy): a replica's ``/metrics``, say.
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from chorus_chartrun.cluster import Cluster

__all__ = ["create_api"]


def create_api(cluster: Cluster) -> Starlette:
    """The API of ``cluster``."""

    async def status(request: Request) -> Response:
        return JSONResponse(cluster.status())

    async def logs(request: Request) -> Response:
        pod = next((p for p in cluster.pods() if p.name == request.path_params["pod"]), None)
        if pod is None:
            return JSONResponse({"error": "no such pod"}, status_code=404)
        container = request.query_params.get("container") or pod.spec["containers"][0]["name"]
        lines = int(request.query_params.get("lines", "200"))
        return PlainTextResponse(pod.logs(container, lines))

    async def proxy(request: Request) -> Response:
        pod = next((p for p in cluster.pods() if p.name == request.path_params["pod"]), None)
        if pod is None or not pod.ip:
            return JSONResponse({"error": "no such pod"}, status_code=404)
        url = f"http://{pod.ip}:{request.path_params['port']}/{request.path_params['path']}"
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            try:
                answer = await client.get(url, params=request.query_params)
            except httpx.HTTPError as exc:
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=502)
        kind = answer.headers.get("content-type", "text/plain")
        return Response(answer.content, status_code=answer.status_code, media_type=kind)

    return Starlette(
        routes=[
            Route("/status", status),
            Route("/pods/{pod}/logs", logs),
            Route("/pods/{pod}/proxy/{port:int}/{path:path}", proxy),
        ]
    )
