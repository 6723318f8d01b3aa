"""The app factory: every service gets the same plumbing."""

from __future__ import annotations

import httpx


async def test_the_schema_lives_under_the_prefix(probe_client: httpx.AsyncClient) -> None:
    spec = (await probe_client.get("/p/openapi.json")).json()
    assert "/items/{item_id}" in spec["paths"]
    # Operational endpoints are not part of the public API description.
    assert "/healthz" not in spec["paths"]


async def test_no_docs_page_loads_scripts_from_a_cdn(probe_client: httpx.AsyncClient) -> None:
    # FastAPI's own pages (Swagger UI, ReDoc) pull their scripts from a public CDN.
    for path in ("/p/docs", "/p/redoc", "/docs", "/redoc"):
        assert (await probe_client.get(path)).status_code == 404, path


async def test_operational_endpoints_exist(probe_client: httpx.AsyncClient) -> None:
    assert (await probe_client.get("/healthz")).json() == {"status": "ok"}
    assert (await probe_client.get("/readyz")).json()["status"] == "ready"
    assert "chorus_http_requests_total" in (await probe_client.get("/metrics")).text
