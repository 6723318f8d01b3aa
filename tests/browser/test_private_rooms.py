"""Rooms people own, in the browser: a private room, an invitation accepted, a conversation
started from the member list, and someone removed — whose page says so and shows nothing
said after."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from playwright.sync_api import Page, expect

from chorus_devstack.stack import Stack

from .conftest import Account, log_in, say


def create_private_room(page: Page, name: str) -> None:
    """Create a members-only room from the "New room" form; it opens."""
    page.locator("#create-room summary").click()
    page.locator("#new-room-name").fill(name)
    page.get_by_label("Members only (private)").first.check()
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#room-title")).to_have_text(f"#{name}")
    page.locator("#room-connection[data-state=live]").wait_for()


def members_panel(page: Page) -> None:
    """Open the room's member list."""
    panel = page.locator("#room-members")
    expect(panel).to_be_visible()
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()


def test_invite_accept_chat_message_and_remove(
    stack: Stack,
    pinned_ingresses: dict[str, str],
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
) -> None:
    ada, bob = new_account("Ada"), new_account("Bob")
    first, second = stack.replicas("realtime")
    page_a = open_page(pinned_ingresses[first])
    page_b = open_page(pinned_ingresses[second])
    log_in(page_a, ada)
    log_in(page_b, bob)
    room = f"plans-{secrets.token_hex(3)}"
    create_private_room(page_a, room)
    expect(page_a.locator("#my-rooms")).to_contain_text(f"#{room}")

    # Bob cannot walk in by name: the room is members only.
    page_b.get_by_label("Room", exact=True).fill(room)
    page_b.get_by_role("button", name="Join").click()
    expect(page_b.locator("#room-connection")).to_have_attribute("data-state", "refused")
    expect(page_b.locator("#room-notice")).to_contain_text("only its members")

    # Ada invites him by e-mail; the invitation reaches his page live; he accepts.
    members_panel(page_a)
    page_a.locator("#invite-email").fill(bob.email)
    page_a.get_by_role("button", name="Invite").click()
    expect(page_a.locator("#members-status")).to_contain_text(f"Invitation sent to {bob.email}")
    invitation = page_b.locator("#invitation-list li")
    expect(invitation).to_contain_text(f"Ada invited you to #{room}")
    invitation.get_by_role("button", name="Accept").click()
    expect(page_b.locator("#room-title")).to_have_text(f"#{room}")
    expect(page_b.locator("#room-connection")).to_have_attribute("data-state", "live")
    expect(page_b.locator("#invitation-list li")).to_have_count(0)

    # They chat, and see each other's names.
    say(page_b, "thanks for the invite")
    expect(page_a.locator("#messages .msg").last).to_contain_text("thanks for the invite")
    expect(page_a.locator("#messages .msg").last.locator(".meta")).to_contain_text("Bob")
    expect(page_a.locator("#member-list")).to_contain_text("Bob")

    # From the member list, Ada starts a conversation with Bob: his list counts it unread.
    page_a.locator(f"#member-list li[data-user-id='{bob.id}']").get_by_role(
        "button", name="Message"
    ).click()
    expect(page_a.locator("#room-title")).to_have_text("Bob")
    page_a.locator("#room-connection[data-state=live]").wait_for()
    say(page_a, "a word in private")
    unread = page_b.locator("#dm-list li").filter(has_text="Ada").locator(".badge.unread")
    expect(unread).to_have_text("1")
    page_b.locator("#dm-list li").filter(has_text="Ada").get_by_role("button").click()
    expect(page_b.locator("#room-title")).to_have_text("Ada")
    expect(page_b.locator("#messages .msg").last).to_contain_text("a word in private")
    expect(page_b.locator("#dm-list .badge.unread")).to_have_count(0)

    # Back in the room, Ada removes Bob: his page says so and shows nothing said after.
    page_b.locator("#my-rooms").get_by_role("button", name=f"#{room}").click()
    expect(page_b.locator("#room-connection")).to_have_attribute("data-state", "live")
    page_a.locator("#my-rooms").get_by_role("button", name=f"#{room}").click()
    expect(page_a.locator("#room-connection")).to_have_attribute("data-state", "live")
    say(page_a, "before the removal")
    expect(page_b.locator("#messages .msg").last).to_contain_text("before the removal")
    members_panel(page_a)
    page_a.locator(f"#member-list li[data-user-id='{bob.id}']").get_by_role(
        "button", name="Remove"
    ).click()
    expect(page_a.locator("#members-status")).to_contain_text("was removed")
    expect(page_b.locator("#room-notice")).to_contain_text("You were removed from this room")
    expect(page_b.locator("#room-connection")).to_have_attribute("data-state", "refused")
    shown = page_b.locator("#messages .msg").count()
    say(page_a, "after the removal")
    expect(page_a.locator("#messages .msg").last).to_contain_text("after the removal")
    # Whatever Ada says now, in this room, never reaches Bob's page (nor his socket: the
    # realtime and e2e suites check that causally, id by id).
    say(page_a, "still talking")
    expect(page_a.locator("#messages .msg").last).to_contain_text("still talking")
    expect(page_b.locator("#messages .msg")).to_have_count(shown)
    assert "after the removal" not in page_b.locator("#messages").inner_text()
    expect(page_b.locator("#my-rooms")).not_to_contain_text(room)
