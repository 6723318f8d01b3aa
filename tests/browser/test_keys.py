"""The Keys card: a key is shown once, works on the gateway, shows its spend, and a
revocation stops it."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from .conftest import Account, log_in


def _ask(ingress: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{ingress}/v1/chat/completions",
        json={"model": "assistant", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
        trust_env=False,
    )


def test_a_key_is_created_shown_once_spends_and_is_revoked(
    ingress: str,
    contexts: Callable[..., BrowserContext],
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
) -> None:
    ada = new_account("Ada")
    page = open_page(ingress, contexts())
    log_in(page, ada)
    page.get_by_label("Key name").fill("notebook")
    page.get_by_label("Monthly budget (USD, optional)").fill("2")
    page.get_by_role("button", name="Create key").click()

    expect(page.get_by_label("New key")).to_contain_text("sk-chorus-")
    secret = page.locator("#key-secret").inner_text()
    keys = page.get_by_role("list", name="Your keys")
    expect(keys.locator("li")).to_have_count(1)
    expect(keys).to_contain_text("notebook")
    expect(keys).to_contain_text("$0.00 of $2.00 this month")
    assert secret not in keys.inner_text()  # the list shows the prefix only

    # The key works on the gateway; its spend shows after a reload, and the secret does not.
    assert _ask(ingress, secret).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        page.reload()
        expect(keys.locator("li")).to_have_count(1)
        if "$0.00 of" not in keys.inner_text():
            break
        assert time.monotonic() < deadline, keys.inner_text()
    expect(keys).to_contain_text("of $2.00 this month")
    expect(page.locator("#key-secret-box")).to_be_hidden()
    assert secret not in page.content()

    page.get_by_role("button", name="Revoke key notebook").click()
    expect(keys.locator("li")).to_have_count(0)
    revoked = time.monotonic()
    while _ask(ingress, secret).status_code != 401:
        assert time.monotonic() - revoked < 1.0, "the gateway still takes the revoked key"
