"""The OpenAPI document: served under /api, every error documented in our error shape."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from chorus_api.routes.apidocs import SWAGGER_UI_FILES, swagger_ui_dir


async def test_docs_are_served_from_our_own_origin(client: httpx.AsyncClient) -> None:
    docs = await client.get("/api/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    references = re.findall(r'(?:src|href)="([^"]*)"', docs.text)
    assert references, docs.text
    for url in references:
        # Same origin only: a path, never a scheme, a host or a protocol-relative URL.
        parts = urlsplit(url)
        assert not parts.scheme, url
        assert not parts.netloc, url
        assert url.startswith("/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
    assert "<script>" not in docs.text  # no inline script: every script is a file
    policy = docs.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert "http" not in policy  # no other origin anywhere in the policy
    bundle = await client.get("/api/docs/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in bundle.content
    init = await client.get("/api/docs/init.js")
    assert '"/api/openapi.json"' in init.text
    assert "validatorUrl: null" in init.text  # no call to the public validator either


def test_the_pinned_swagger_ui_files_are_there() -> None:
    # fastapi-offline's package data is all we use of it (pinned in pyproject.toml).
    directory = swagger_ui_dir()
    for name in SWAGGER_UI_FILES:
        assert (directory / name).stat().st_size > 100_000, name
    assert b'PACKAGE_VERSION:"5.' in (directory / "swagger-ui-bundle.js").read_bytes()


async def test_every_operation_documents_its_errors(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/openapi.json")).json()
    expected = {
        ("post", "/api/auth/register"),
        ("post", "/api/auth/token"),
        ("get", "/api/users/me"),
        ("patch", "/api/users/me"),
        ("delete", "/api/users/me"),
        ("get", "/api/users/{user_id}"),
        ("get", "/api/orders"),
        ("post", "/api/orders"),
        ("get", "/api/orders/{order_id}"),
        ("patch", "/api/orders/{order_id}"),
        ("delete", "/api/orders/{order_id}"),
        ("get", "/api/dashboard"),
        ("get", "/api/users/{user_id}/profile"),
        ("post", "/api/rooms"),
        ("get", "/api/rooms"),
        ("get", "/api/rooms/{room}"),
        ("patch", "/api/rooms/{room}"),
        ("delete", "/api/rooms/{room}"),
        ("post", "/api/rooms/{room}/join"),
        ("post", "/api/rooms/{room}/read"),
        ("get", "/api/rooms/{room}/messages"),
        ("get", "/api/rooms/{room}/members"),
        ("patch", "/api/rooms/{room}/members/{member_id}"),
        ("delete", "/api/rooms/{room}/members/{member_id}"),
        ("post", "/api/rooms/{room}/invitations"),
        ("get", "/api/rooms/{room}/invitations"),
        ("delete", "/api/rooms/{room}/invitations/{invitation_id}"),
        ("get", "/api/invitations"),
        ("post", "/api/invitations/{invitation_id}/accept"),
        ("delete", "/api/invitations/{invitation_id}"),
        ("post", "/api/dms"),
        ("get", "/api/dms"),
        ("get", "/api/jobs/{job_id}"),
        ("post", "/api/keys"),
        ("get", "/api/keys"),
        ("get", "/api/keys/{key_id}"),
        ("post", "/api/keys/{key_id}/rotate"),
        ("delete", "/api/keys/{key_id}"),
        ("post", "/api/teams"),
        ("get", "/api/teams"),
        ("get", "/api/teams/{team_id}"),
        ("post", "/api/teams/{team_id}/members"),
        ("delete", "/api/teams/{team_id}/members/{member_id}"),
        ("put", "/api/teams/{team_id}/budget"),
        ("get", "/api/users/{user_id}/budget"),
        ("put", "/api/users/{user_id}/budget"),
        ("get", "/api/usage"),
    }
    operations = {
        (method, path): op for path, item in schema["paths"].items() for method, op in item.items()
    }
    assert set(operations) == expected
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for key, op in operations.items():
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        assert "503" in errors, key
        for status, response in errors.items():
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (
                key,
                status,
            )
            assert content["example"]["error"]["code"], (key, status)
        if key != ("post", "/api/auth/register") and key != ("post", "/api/auth/token"):
            assert "401" in errors, key
            assert op["security"] == [{"OAuth2PasswordBearer": []}], key
    register = operations[("post", "/api/auth/register")]
    body = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema["components"]["schemas"][body.rsplit("/", 1)[1]]["examples"]
    assert operations[("post", "/api/auth/token")]["responses"]["429"]["headers"]["Retry-After"]


async def test_wrong_method_lists_every_allowed_one(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/users/me")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert response.json()["error"]["code"] == "method_not_allowed"
