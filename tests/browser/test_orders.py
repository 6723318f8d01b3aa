"""Orders and the dashboard, and notifications reaching the user's other tabs live."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from .conftest import Account, log_in


def test_an_order_placed_in_one_tab_is_a_notification_in_the_other(
    ingress: str,
    contexts: Callable[..., BrowserContext],
    open_page: Callable[..., Page],
    new_account: Callable[[str], Account],
) -> None:
    ada = new_account("Ada")
    browser = contexts()
    shop, other_tab = open_page(ingress, browser), open_page(ingress, browser)
    log_in(shop, ada)
    log_in(other_tab, ada)  # sessionStorage is per tab: each tab signs in
    # The other tab's notification stream is live before the order is placed.
    expect(other_tab.locator("#notification-list")).to_have_attribute("data-state", "live")

    shop.get_by_label("Item").fill("Espresso machine")
    shop.get_by_label("Quantity").fill("2")
    shop.get_by_label("Total price").fill("399.90")
    shop.get_by_role("button", name="Place order").click()

    notifications = other_tab.get_by_role("list", name="Notifications")
    expect(
        notifications.locator("li").filter(
            has_text="created: 2 \N{MULTIPLICATION SIGN} Espresso machine"
        )
    ).to_have_count(1)
    # The other tab refreshes its orders and totals from the notification.
    expect(other_tab.locator("#total-orders")).to_have_text("1")
    expect(other_tab.locator("#total-spent")).to_have_text("399.90")
    expect(other_tab.get_by_role("list", name="Your orders")).to_contain_text("Espresso machine")

    # A status change made in the other tab comes back to the first one. (Cancelling is
    # the one a buyer makes; paying and shipping are the shop's.)
    expect(other_tab.get_by_role("button", name="Mark paid: order")).to_have_count(0)
    other_tab.get_by_role("button", name="Cancel: order").click()
    expect(shop.get_by_role("list", name="Notifications")).to_contain_text("is now cancelled")
    expect(shop.locator("#order-list li").first).to_have_attribute("data-status", "cancelled")
