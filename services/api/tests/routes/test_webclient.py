"""The browser client's files: the page at /, the rest under /web, with strict headers."""

from __future__ import annotations

import re

import httpx

from chorus_api.routes.webclient import STATIC_DIR


async def test_the_page_is_served_at_the_root(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/web/app.js"></script>' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_every_file_the_page_references_is_served(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    referenced = set(re.findall(r'(?:src|href)="(/web/[^"]+)"', page))
    modules = {f"/web/{p.name}" for p in STATIC_DIR.glob("*.js")}
    assert "/web/app.js" in referenced
    assert "/web/style.css" in referenced
    for path in referenced | modules:
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"], path
    script = await client.get("/web/app.js")
    assert "javascript" in script.headers["content-type"]


async def test_an_unchanged_file_is_a_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/web/app.js")
    again = await client.get("/web/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert not again.content


async def test_nothing_outside_the_static_directory(client: httpx.AsyncClient) -> None:
    for path in ("/web/missing.js", "/web/../main.py", "/web/%2e%2e/main.py", "/index.html"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_the_page_is_not_in_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    assert all(p.startswith("/api/") for p in paths)
