"""Readable on a phone, usable from the keyboard; and the README's screenshot."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from chorus_devstack.stack import Stack

from .conftest import Account, join, log_in, say

PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot-chat.png"


def overflows(page: Page) -> bool:
    """Whether the page scrolls sideways (text or controls wider than the screen)."""
    return bool(page.evaluate("document.documentElement.scrollWidth > window.innerWidth"))


def test_a_phone_gets_one_column_without_sideways_scrolling(
    ingress: str, open_page: Callable[..., Page], new_account: Callable[[str], Account]
) -> None:
    page = open_page(ingress, **PHONE)
    assert not overflows(page)
    log_in(page, new_account("Ada"))
    join(page, "phone")
    say(page, "a-very-long-word-" * 12)
    expect(page.locator("#messages .msg")).to_have_count(1)
    assert not overflows(page)
    chat, notifications = (
        page.locator("#chat").bounding_box(),
        page.locator("#notifications").bounding_box(),
    )
    assert chat
    assert notifications
    assert notifications["y"] >= chat["y"] + chat["height"]


def test_keyboard_only_from_log_in_to_a_sent_message(
    ingress: str, open_page: Callable[..., Page], new_account: Callable[[str], Account]
) -> None:
    ada = new_account("Ada")
    page = open_page(ingress)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#login-email")).to_be_focused()
    page.keyboard.type(ada.email)
    page.keyboard.press("Tab")
    page.keyboard.type(ada.password)
    page.keyboard.press("Enter")
    # Signed in, the room name has focus; Enter joins and moves focus to the message box.
    expect(page.locator("#room-name")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("keyboard-only")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    page.keyboard.type("sent with the keyboard")
    page.keyboard.press("Enter")
    expect(page.get_by_role("log", name="Messages")).to_contain_text("sent with the keyboard")


def test_chat_view_screenshot(
    stack: Stack,
    ingress: str,
    pinned_ingresses: dict[str, str],
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
    tmp_path: Path,
) -> None:
    """The chat view as the README shows it (written to docs/ with CHORUS_SCREENSHOT=1)."""
    ada, bob = new_account("Ada"), new_account("Bob")
    first, second = stack.replicas("realtime")
    size = {"viewport": {"width": 1200, "height": 860}}
    page = open_page(pinned_ingresses[first], **size)
    other = open_page(pinned_ingresses[second], **size)
    log_in(page, ada)
    log_in(other, bob)
    join(page, "lobby")
    join(other, "lobby")
    say(other, "Morning! Is the release still on for today?")
    say(page, "Yes, the chart is merged. @assistant can you summarise what changed?")
    say(page, "@assistant what does Chorus do, in one sentence?")
    expect(page.locator("#messages .msg.assistant")).to_have_attribute("data-state", "done")
    page.get_by_label("Item").fill("Team lunch")
    page.get_by_role("button", name="Place order").click()
    expect(page.get_by_role("list", name="Notifications")).to_contain_text("Team lunch")
    other.get_by_label("Message", exact=True).press_sequentially("On it")
    expect(page.locator("#typing")).to_contain_text("is typing")
    target = SCREENSHOT if os.environ.get("CHORUS_SCREENSHOT") == "1" else tmp_path / "chat.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
