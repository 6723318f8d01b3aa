"""Signing up and logging in, and where the token goes (never into a URL)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from playwright.sync_api import Page, expect

from chorus_devstack.stack import Stack

from .conftest import PASSWORD, Account, Problems


def test_sign_up_then_the_welcome_mail_shows_up_live(
    stack: Stack, ingress: str, open_page: Callable[..., Page]
) -> None:
    page = open_page(ingress)
    email = f"ada-{secrets.token_hex(4)}@example.com"
    page.get_by_label("Full name").fill("Ada Lovelace")
    page.locator("#signup-email").fill(email)
    page.locator("#signup-password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()

    expect(page.locator("#whoami-name")).to_have_text("Ada Lovelace")
    # The worker sends the welcome mail after registration; its notification arrives live.
    expect(page.get_by_role("list", name="Notifications")).to_contain_text("Welcome e-mail sent")

    token = page.evaluate("sessionStorage.getItem('chorus.token')")
    assert token
    assert token.count(".") == 2
    assert token not in page.url
    access_log = (stack.state_dir / "nginx" / "access.log").read_text()
    assert token not in access_log


def test_a_wrong_password_is_said_and_a_reload_keeps_the_session(
    ingress: str,
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
    problems: Problems,
) -> None:
    problems.allow("status of 401")
    account = new_account("Grace")
    page = open_page(ingress)
    page.locator("#login-email").fill(account.email)
    page.locator("#login-password").fill("not-the-Password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#auth-error")).to_contain_text("Wrong e-mail or password")

    page.locator("#login-password").fill(account.password)
    page.locator("#login-password").press("Enter")
    expect(page.locator("#whoami-name")).to_have_text("Grace")

    page.reload()
    expect(page.locator("#whoami-name")).to_have_text("Grace")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('chorus.token')") is None
