"""Fixtures for chorus_common tests: a small service app served over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from chorus_common.app import create_service_app
from chorus_common.settings import ServiceSettings
from chorus_devstack.testing import base_url, serve_app

TEST_SECRET = "a-test-secret-that-is-long-enough-for-hs256-keys"


def make_settings(**overrides: Any) -> ServiceSettings:
    """Settings as a test process would have them (no environment read beyond defaults)."""
    values: dict[str, Any] = {"env": "test", "jwt_secret": TEST_SECRET, "service_name": "probe"}
    values.update(overrides)
    return ServiceSettings(**values)


class Item(BaseModel):
    """A body to validate."""

    name: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class StreamControl:
    """Lets a test release a streaming endpoint step by step and see its disconnects."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.disconnected = asyncio.Event()


def probe_router(control: StreamControl) -> APIRouter:
    """Routes exercising the plumbing: errors, validation, a stream, a crash."""
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise HTTPException(status_code=404, detail="no such item")
        return {"id": item_id}

    @router.post("/items", status_code=201)
    async def create_item(item: Item) -> Item:
        return item

    @router.get("/boom")
    async def boom() -> None:
        msg = "kaboom"
        raise RuntimeError(msg)

    @router.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            # Record that the client left, whether we see it as an http.disconnect message,
            # as cancellation, or as the server closing this generator.
            try:
                yield b"first\n"
                await control.release.wait()
                yield b"second\n"
                while not await request.is_disconnected():
                    yield b"tick\n"
                    await asyncio.sleep(0.01)
            finally:
                control.disconnected.set()

        return StreamingResponse(body(), media_type="text/plain")

    return router


@pytest.fixture
def secret() -> str:
    """A JWT secret good enough for ENV=test."""
    return TEST_SECRET


@pytest.fixture
def control() -> StreamControl:
    """Controls for the probe app's streaming endpoint."""
    return StreamControl()


@pytest.fixture
def probe_app(control: StreamControl) -> FastAPI:
    """A service app built with create_service_app and the probe routes."""
    return create_service_app(
        make_settings(),
        title="probe",
        version="0",
        routers=[probe_router(control)],
        docs_prefix="/p",
    )


@pytest.fixture
async def probe_client(probe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the probe app through a real uvicorn socket."""
    async with (
        serve_app(probe_app) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False) as client,
    ):
        yield client
