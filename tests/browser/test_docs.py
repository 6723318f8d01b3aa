"""``/api/docs`` in a real browser: Swagger UI renders from our origin alone, within its CSP."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, expect

from .conftest import Problems


def test_the_api_docs_render_with_nothing_from_another_origin(
    ingress: str, contexts: Callable[..., BrowserContext], problems: Problems
) -> None:
    page = problems.watch(contexts().new_page())
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{ingress}/api/docs")
    # The operations are there (the schema was fetched and rendered)...
    expect(page.locator(".opblock-summary-path", has_text="/api/auth/token")).to_be_visible()
    expect(
        page.locator(".opblock-summary-path", has_text="/api/orders/{order_id}").first
    ).to_be_visible()
    # An operation opens with its schemas and highlighted examples, under the strict CSP.
    page.locator(".opblock-summary-path", has_text="/api/auth/register").click()
    expect(page.locator(".opblock-body").first).to_contain_text("weak_password")
    # ...and every request went to this origin: no CDN, no validator badge.
    assert requested, "the page requested nothing"
    strangers = [url for url in requested if not url.startswith(f"{ingress}/")]
    assert strangers == []
    # Console errors, uncaught exceptions and CSP violations fail the test (the fixture).
