"""Rooms in the browser: two people on two realtime replicas, presence, typing, history,
and a dropped connection that comes back without losing or doubling a message."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect

from chorus_devstack.stack import Stack

from .conftest import Account, Problems, join, log_in, say


def room_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def messages(page: Page) -> list[str]:
    """The text of every chat message on screen, in order."""
    return page.locator("#messages .msg .text").all_inner_texts()


def in_a_room(
    open_page: Callable[..., Page], room: str, *people: tuple[Account, str]
) -> list[Page]:
    """One page per (account, ingress url): opened, logged in and joined to ``room``."""
    pages = []
    for account, url in people:
        page = open_page(url)
        log_in(page, account)
        join(page, room)
        pages.append(page)
    return pages


@pytest.fixture
def ada_and_bob(
    ingress: str,
    pinned_ingresses: dict[str, str],
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
) -> Callable[[str], list[Page]]:
    """Ada (through the balancing ingress) and Bob (pinned to one replica) in a new room."""

    def pages(prefix: str) -> list[Page]:
        bob_url = next(iter(pinned_ingresses.values()))
        people = ((new_account("Ada"), ingress), (new_account("Bob"), bob_url))
        return in_a_room(open_page, room_name(prefix), *people)

    return pages


def go_offline(page: Page) -> None:
    """Drop the page's room socket and keep it down until ``window.chorus.releaseSocket()``."""
    page.evaluate("window.chorus.dropSocket({hold: true})")
    expect(page.locator("#room-connection")).to_have_attribute("data-state", "offline")


def replicas_in_presence(stack: Stack, room: str) -> dict[str, str]:
    """user id → replica, from realtime's presence hash (fields ``<replica>|<user>``)."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys: list[bytes] = client.hkeys(f"chorus:presence:room:{room}")  # type: ignore[assignment]
        fields = [f.decode() for f in keys]
    finally:
        client.close()
    # <replica> is INSTANCE_ID plus a per-boot suffix.
    return {f.rsplit("|", 1)[1]: f.rsplit("|", 1)[0] for f in fields}


def test_two_people_chat_across_the_two_replicas(
    stack: Stack,
    pinned_ingresses: dict[str, str],
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
) -> None:
    ada, bob = new_account("Ada"), new_account("Bob")
    room = room_name("replicas")
    first, second = stack.replicas("realtime")
    page_a, page_b = in_a_room(
        open_page, room, (ada, pinned_ingresses[first]), (bob, pinned_ingresses[second])
    )

    # Both are present, each seen from either replica, and each really is on its own.
    for page in (page_a, page_b):
        expect(page.locator("#presence-count")).to_have_text("2")
    where = replicas_in_presence(stack, room)
    assert where[str(ada.id)].startswith(first)
    assert where[str(bob.id)].startswith(second)

    say(page_a, "hello from Ada")
    expect(page_b.locator("#messages .msg").last).to_contain_text("hello from Ada")
    # People, not numbers: the sender's display name, never an id.
    expect(page_b.locator("#messages .msg").last.locator(".meta")).to_contain_text("Ada")
    expect(page_b.locator("#presence-list")).to_contain_text("Ada")
    say(page_b, "hi Ada, Bob here")
    expect(page_a.locator("#messages .msg").last).to_contain_text("hi Ada, Bob here")
    mine = page_a.locator("#messages .msg.mine")
    expect(mine).to_have_count(1)
    expect(mine.locator(".meta")).to_contain_text("You")
    expect(mine.locator(".text")).to_have_text("hello from Ada")

    # Typing shows on the other side (an ephemeral event, not a message).
    page_b.get_by_label("Message", exact=True).press_sequentially("typ")
    expect(page_a.locator("#typing")).to_have_text("Bob is typing…")
    assert messages(page_a) == ["hello from Ada", "hi Ada, Bob here"]
    assert messages(page_b) == ["hello from Ada", "hi Ada, Bob here"]


def test_a_dropped_socket_resumes_without_losing_or_doubling(
    ada_and_bob: Callable[[str], list[Page]],
) -> None:
    page_a, page_b = ada_and_bob("resume")
    say(page_b, "before the blip")
    expect(page_a.locator("#messages .msg")).to_have_count(1)

    # Ada's connection drops and stays down while Bob keeps talking.
    go_offline(page_a)
    missed = [f"while you were away {i}" for i in range(3)]
    for text in missed:
        say(page_b, text)
    expect(page_b.locator("#messages .msg")).to_have_count(4)

    # She comes back: told so, and every message is there exactly once, in order.
    page_a.evaluate("window.chorus.releaseSocket()")
    expect(page_a.locator("#room-connection")).to_have_attribute("data-state", "live")
    expect(page_a.get_by_role("status").filter(has_text="Reconnected")).to_have_text(
        re.compile(r"^Reconnected, recovered \d+ missed events?\.$")
    )
    expect(page_a.locator("#messages .msg")).to_have_count(4)
    assert messages(page_a) == ["before the blip", *missed]
    assert page_a.evaluate("window.chorus.connections()") == 2

    # And the live stream carries on after the resume.
    say(page_b, "after the blip")
    expect(page_a.locator("#messages .msg").last).to_contain_text("after the blip")
    assert messages(page_a) == ["before the blip", *missed, "after the blip"]


def test_messages_typed_while_offline_go_out_once_in_order_on_reconnect(
    ada_and_bob: Callable[[str], list[Page]],
) -> None:
    page_a, page_b = ada_and_bob("outbox")

    go_offline(page_a)
    say(page_a, "written offline 1")
    say(page_a, "written offline 2")
    # The box is free for the next message and Ada is told what is waiting.
    expect(page_a.get_by_label("Message", exact=True)).to_have_value("")
    expect(page_a.locator("#room-notice")).to_have_text(
        "Not connected yet: 2 messages will be sent once connected."
    )
    expect(page_b.locator("#messages .msg")).to_have_count(0)

    page_a.evaluate("window.chorus.releaseSocket()")
    expected = ["written offline 1", "written offline 2"]
    for page in (page_a, page_b):
        expect(page.locator("#messages .msg")).to_have_count(2)
        assert messages(page) == expected
    # Sent once: a later message lands third, with nothing doubled in between.
    say(page_b, "got both")
    for page in (page_a, page_b):
        expect(page.locator("#messages .msg")).to_have_count(3)
        assert messages(page) == [*expected, "got both"]


def test_a_replica_restart_reconnects_and_recovers(
    stack: Stack,
    ingress: str,
    pinned_ingresses: dict[str, str],
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
    problems: Problems,
) -> None:
    # The drained socket's successor may first meet the stopping replica.
    problems.allow("WebSocket connection to")
    ada, bob = new_account("Ada"), new_account("Bob")
    room = room_name("restart")
    page_a = open_page(ingress)  # the shared ingress: either replica may take her back
    log_in(page_a, ada)
    join(page_a, room)
    expect(page_a.locator("#presence-count")).to_have_text("1")
    hers = replicas_in_presence(stack, room)[str(ada.id)]
    restarted = next(r for r in stack.replicas("realtime") if hers.startswith(r))
    (other,) = (r for r in stack.replicas("realtime") if r != restarted)
    page_b = open_page(pinned_ingresses[other])
    log_in(page_b, bob)
    join(page_b, room)
    say(page_b, "before the restart")
    expect(page_a.locator("#messages .msg")).to_have_count(1)

    # SIGTERM: the replica drains (a reconnect frame with her position, then 1012).
    stack.restart(restarted)

    expect(page_a.get_by_role("status").filter(has_text="Reconnected")).to_have_text(
        re.compile(r"^Reconnected, recovered \d+ missed events?\.$")
    )
    expect(page_a.locator("#room-connection")).to_have_attribute("data-state", "live")
    say(page_b, "after the restart")
    expect(page_a.locator("#messages .msg")).to_have_count(2)
    assert messages(page_a) == ["before the restart", "after the restart"]


def test_history_scrolls_back_to_the_first_message(
    stack: Stack,
    ingress: str,
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
) -> None:
    ada, bob, cleo = new_account("Ada"), new_account("Bob"), new_account("Cleo")
    room = room_name("history")
    page_a, page_b = open_page(ingress), open_page(ingress)
    log_in(page_a, ada)
    log_in(page_b, bob)
    join(page_a, room)
    join(page_b, room)
    # 35 messages, two people taking turns (one person sending that fast would be
    # rate-limited by realtime, as a flood should be).
    sent = [f"line {i:02d}" for i in range(35)]
    for i, text in enumerate(sent):
        say(page_a if i % 2 == 0 else page_b, text)
        expect(page_a.locator("#messages .msg")).to_have_count(i + 1)
    # The worker persists room messages about once a second; wait until all are stored.
    token = page_a.evaluate("sessionStorage.getItem('chorus.token')")
    _wait_until_stored(ingress, room, token, 35)

    # A newcomer to a young room gets everything realtime still holds at once...
    page_d = open_page(ingress)
    log_in(page_d, new_account("Dora"))
    join(page_d, room)
    expect(page_d.locator("#messages .msg")).to_have_count(35)
    assert messages(page_d) == sent

    # ...and once the room was quiet longer than realtime keeps it (HISTORY_TTL), someone
    # joining sees the newest stored page, and scrolls back to the first message.
    client = redis.Redis.from_url(stack.redis_url)
    try:
        client.delete(f"chorus:stream:room:{room}", f"chorus:epoch:room:{room}")
    finally:
        client.close()
    page_c = open_page(ingress)
    log_in(page_c, cleo)
    join(page_c, room)
    expect(page_c.locator("#messages .msg")).to_have_count(30)
    assert messages(page_c) == sent[5:]
    page_c.get_by_role("button", name="Load older messages").click()
    expect(page_c.locator("#messages .msg")).to_have_count(35)
    assert messages(page_c) == sent
    expect(page_c.get_by_role("button", name="Load older messages")).to_be_hidden()


def _wait_until_stored(base: str, room: str, token: str, count: int) -> None:
    deadline = time.monotonic() + 20
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, trust_env=False, headers=headers) as client:
        while True:
            page = client.get(f"/api/rooms/{room}/messages", params={"limit": 100}).json()
            if len(page["items"]) >= count:
                return
            assert time.monotonic() < deadline, f"only {len(page['items'])} of {count} stored"
            time.sleep(0.2)
