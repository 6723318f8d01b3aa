"""Property-based run over the OpenAPI document: no 5xx, no response outside the schema.

Schemathesis reads ``/api/openapi.json`` from the api served over real HTTP and, for every
operation, sends the schema's examples, its coverage cases (boundaries and invalid values)
and a fixed number of generated requests, with a valid bearer token so the authenticated
routes are exercised past their 401. Every response must pass all of schemathesis' checks
(not a server error, documented status, matching body and headers, invalid data rejected,
auth not ignored…). The seed is fixed, so a run is reproducible.

Schemathesis is synchronous (``requests``), so the api runs in a thread with an event loop
of its own, on a Redis database of its own (its failed logins trip the per-address limit).
``DELETE /api/users/me`` is left out: it would delete the account whose token every other
case uses (``tests/routes/test_users.py`` covers it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_devstack.testing import base_url, serve_app

from .support import PASSWORD, unique_email

SEED = 20261128
MAX_EXAMPLES = 12


class ThreadedApi:
    """The api served by uvicorn on an event loop in a background thread."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.url = ""
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-under-test", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve_app(create_app(self.settings)) as server:
            self.url = base_url(server)
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedApi:
        self._thread.start()
        self._started.wait(timeout=30)
        if self._error is not None or not self.url:
            msg = "the api did not start"
            raise RuntimeError(msg) from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def threaded_api(settings: ApiSettings) -> Iterator[str]:
    """Base URL of an api instance served from a thread."""
    own_redis = settings.redis_url.rsplit("/", 1)[0] + "/1"
    with ThreadedApi(settings.model_copy(update={"redis_url": own_redis})) as api:
        yield api.url


@pytest.fixture(scope="module")
def bearer_token(threaded_api: str) -> str:
    """A valid token of a fresh account."""
    email = unique_email("schemathesis")
    with httpx.Client(base_url=threaded_api, trust_env=False, timeout=30) as http:
        registered = http.post(
            "/api/auth/register",
            json={"email": email, "password": PASSWORD, "full_name": "Property Tester"},
        )
        assert registered.status_code == 202, registered.text
        token = http.post("/api/auth/token", data={"username": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        access_token: str = token.json()["access_token"]
        return access_token


@pytest.fixture(scope="module")
def api_schema(threaded_api: str, bearer_token: str) -> Any:
    """The api's OpenAPI document, loaded over HTTP, with the run's fixed settings."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {bearer_token}"},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "continue-on-failure": True,
            "operations": [
                {
                    # What one may do to keys and teams depends on roles (administrator,
                    # team admin, member) and on bounds (keys per owner): 403 and 409 are
                    # answers to schema-valid requests there.
                    "include-path-regex": "^/api/(keys|teams)",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "404", "409"]
                        }
                    },
                },
                {
                    # The password policy has rules JSON Schema cannot state (character
                    # classes, "not the e-mail"), so a schema-valid body may rightly be a
                    # 422 weak_password here — and only here; and every request comes from
                    # one address, which the sign-up and password-attempt limits see (429).
                    "include-path": ["/api/auth/register", "/api/users/me"],
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "409", "422", "429"]
                        }
                    },
                },
                {
                    # Rooms: a schema-valid request may rightly meet a room that is not
                    # yours (404, or 403 for its content or a role you lack), a name in use
                    # or a limit (409), an opaque cursor not issued here or a reserved name
                    # (422), a quota (429) — the generated requests create, change and
                    # delete rooms as they go.
                    "include-path-regex": "^/api/(rooms|invitations|dms)",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
                        }
                    },
                },
                {
                    # Cursors are opaque: any string fits the schema, but only ones this
                    # api issued are valid — anything else is a 422 invalid_cursor.
                    "include-path": ["/api/orders"],
                    "include-method": "GET",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "404", "422"]
                        }
                    },
                },
                {
                    # A usage window is from <= to, a year at most, and names one of a
                    # key, a team or a user: relations JSON Schema cannot state.
                    "include-path": ["/api/usage"],
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "404", "422"]
                        }
                    },
                },
            ],
        }
    )
    return schemathesis.openapi.from_url(f"{threaded_api}/api/openapi.json", config=config)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 relabels the test per operation through ``Node._nodeid``, which
    # pytest 9.2 replaced with a structured id; give it the attribute it reads and writes.
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    method="DELETE", path="/api/users/me"
)


@schema.parametrize()
def test_api_conforms_to_its_schema(case: Any) -> None:
    case.call_and_validate()


def test_the_run_went_past_authentication(threaded_api: str, bearer_token: str) -> None:
    """The generated requests were authenticated: they left orders on the test account."""
    with httpx.Client(base_url=threaded_api, trust_env=False, timeout=30) as http:
        orders = http.get("/api/orders", headers={"Authorization": f"Bearer {bearer_token}"})
    assert orders.status_code == 200
    assert orders.json()["items"], "no request reached POST /api/orders past its 401"
