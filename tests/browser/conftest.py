"""The browser suite's system and browser: the devstack, two pinned ingresses, Chromium.

The stack runs as the e2e suite's does (two realtime replicas behind nginx). Besides the
shared ingress, each realtime replica gets an ingress of its own (the same generated
nginx config, with only that replica upstream), so a test can put two people on two
replicas for certain instead of hoping round-robin does. Chromium is Debian's
(/usr/bin/chromium, installed by `make test`), driven by Playwright; no browser is ever
downloaded. Every page records console errors, uncaught exceptions and CSP violations,
and a test fails if any occurred.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from chorus_devstack.nginx import nginx_binary, nginx_spec, render_nginx_conf
from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess
from chorus_devstack.routes import load_routes
from chorus_devstack.stack import Ports, Stack, StackOptions

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "correct-Horse-battery-9"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The running system (nginx is required: browsers reach Chorus only through it)."""
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: run `make test-browser`, which installs it")
    system = Stack(
        StackOptions(
            state_dir=Path(tmp_path_factory.mktemp("stack")),
            ports=Ports.free(),
            realtime_replicas=2,
            gateway_replicas=1,
        )
    )
    system.start()
    yield system
    system.stop()


@pytest.fixture(scope="session")
def ingress(stack: Stack) -> str:
    """The public base URL (round-robin over both realtime replicas)."""
    return stack.url("ingress")


@pytest.fixture(scope="session")
def pinned_ingresses(stack: Stack) -> Iterator[dict[str, str]]:
    """Replica name → base URL of an ingress whose realtime upstream is that replica only."""
    routed = ["api", *stack.replicas("realtime"), *stack.replicas("llm-gateway")]
    address = {n: stack.url(n).removeprefix("http://") for n in routed}
    processes: list[ManagedProcess] = []
    urls: dict[str, str] = {}
    try:
        for replica in stack.replicas("realtime"):
            port = free_port()
            directory = stack.state_dir / f"nginx-{replica}"
            conf = render_nginx_conf(
                routes=load_routes(stack.root / "deploy/helm/chorus/files/routes.yaml"),
                upstreams={
                    "api": [address["api"]],
                    "realtime": [address[replica]],
                    "llm-gateway": [address[n] for n in stack.replicas("llm-gateway")],
                },
                listen=f"127.0.0.1:{port}",
                prefix=directory,
            )
            url = f"http://127.0.0.1:{port}"
            spec = nginx_spec(directory, conf, ready_url=f"{url}/api/openapi.json")
            process = ManagedProcess(
                dataclasses.replace(spec, name=f"ingress-{replica}"), stack.log_dir
            )
            process.start()
            processes.append(process)
            process.wait_ready()
            urls[replica] = url
        yield urls
    finally:
        for process in processes:
            process.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-browser`, which installs chromium")
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    yield chromium
    chromium.close()


@dataclass
class Account:
    """A registered user."""

    email: str
    password: str
    full_name: str
    id: int


@pytest.fixture
def new_account(ingress: str) -> Callable[[str], Account]:
    """Register a fresh user through the api (the sign-up form has a test of its own)."""

    def register(name: str) -> Account:
        email = f"{name.lower()}-{secrets.token_hex(4)}@example.com"
        # A client address of its own: the api limits sign-ups per address, and the
        # devstack (ENV=dev) believes X-Forwarded-For from anyone.
        raw = secrets.token_bytes(3)
        here = {"X-Forwarded-For": f"10.{raw[0]}.{raw[1]}.{raw[2]}"}
        with httpx.Client(base_url=ingress, trust_env=False, timeout=30) as client:
            registered = client.post(
                "/api/auth/register",
                json={"email": email, "password": PASSWORD, "full_name": name},
                headers=here,
            )
            assert registered.status_code == 202, registered.text
            token = client.post(
                "/api/auth/token", data={"username": email, "password": PASSWORD}, headers=here
            ).json()["access_token"]
            me = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        return Account(email, PASSWORD, name, me.json()["id"])

    return register


@dataclass
class Problems:
    """What went wrong inside the pages of a test."""

    messages: list[str] = dataclasses.field(default_factory=list)
    allowed: list[str] = dataclasses.field(default_factory=list)

    def allow(self, text: str) -> None:
        """A console error containing ``text`` is expected by the test (e.g. a refused login)."""
        self.allowed.append(text)

    def unexpected(self) -> list[str]:
        """The problems no test said it expected."""
        return [m for m in self.messages if not any(a in m for a in self.allowed)]

    def watch(self, page: Page) -> Page:
        page.on(
            "console",
            lambda m: (
                self.messages.append(f"console {m.type}: {m.text}") if m.type == "error" else None
            ),
        )
        page.on("pageerror", lambda e: self.messages.append(f"uncaught: {e}"))
        return page


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Make browser contexts (separate cookie jars and storage: separate people)."""
    made: list[BrowserContext] = []

    def make(**options: object) -> BrowserContext:
        context = browser.new_context(**options)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture
def problems() -> Iterator[Problems]:
    """Console errors, uncaught exceptions and CSP violations of the test's pages: none."""
    seen = Problems()
    yield seen
    assert seen.unexpected() == []


@pytest.fixture
def open_page(contexts: Callable[..., BrowserContext], problems: Problems) -> Callable[..., Page]:
    """A page at ``base_url``, in a new context unless one is given, watched for problems."""

    def open_(base_url: str, context: BrowserContext | None = None, **options: object) -> Page:
        page = problems.watch((context or contexts(**options)).new_page())
        page.goto(base_url + "/")
        return page

    return open_


def log_in(page: Page, account: Account) -> None:
    """Fill the log-in form and wait for the signed-in view."""
    page.locator("#login-email").fill(account.email)
    page.locator("#login-password").fill(account.password)
    page.get_by_role("button", name="Log in").click()
    page.locator("#whoami-name").filter(has_text=account.full_name).wait_for()


def join(page: Page, room: str) -> None:
    """Join a room and wait until its socket is live."""
    page.get_by_label("Room", exact=True).fill(room)
    page.get_by_role("button", name="Join").click()
    page.locator("#room-connection[data-state=live]").wait_for()


def say(page: Page, text: str) -> None:
    """Type a message and press Enter."""
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")
