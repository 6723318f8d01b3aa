"""The OpenAPI document: served under /api, every error documented in our error shape."""

from __future__ import annotations

import httpx


async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/api/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


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
        ("get", "/api/rooms/{room}/messages"),
        ("get", "/api/jobs/{job_id}"),
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
