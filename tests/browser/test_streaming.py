"""Answers that stream: the assistant in a room, and the gateway's playground.

The mock upstream is told (by a directive in the prompt) to pause between tokens, so an
answer takes about a second; a MutationObserver installed in the page records every text
the person saw, and the test checks that some of them were partial answers.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from chorus_mock_openai.tokens import completion_text

from .conftest import Account, join, log_in, say

TOKENS = 24
SLOW = f"[mock inter_token_ms=40 tokens={TOKENS}]"

RECORD_TEXTS = """(selector) => {
  window.seenTexts = [];
  const record = () => {
    const el = document.querySelector(selector);
    if (el) window.seenTexts.push({text: el.querySelector('.text')?.textContent ?? el.textContent,
                                   state: el.dataset.state});
  };
  new MutationObserver(record).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def partial_texts(page: Page, final: str) -> list[str]:
    """Texts seen while streaming that were a strict, non-empty beginning of the answer."""
    seen = page.evaluate("window.seenTexts")
    return [
        s["text"]
        for s in seen
        if s["state"] == "streaming"
        and s["text"]
        and s["text"] != final
        and final.startswith(s["text"])
    ]


def test_the_assistant_answer_streams_in_token_by_token(
    ingress: str, open_page: Callable[..., Page], new_account: Callable[[str], Account]
) -> None:
    page = open_page(ingress)
    log_in(page, new_account("Ada"))
    join(page, "assistant-room")
    page.evaluate(RECORD_TEXTS, "#messages .msg.assistant")

    say(page, f"@assistant what is Chorus? {SLOW}")

    answer = page.locator("#messages .msg.assistant")
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    final = completion_text(TOKENS)
    expect(answer.locator(".text")).to_have_text(final)
    assert len(partial_texts(page, final)) >= 3
    # The question and then the answer, once each.
    expect(page.locator("#messages .msg")).to_have_count(2)


def test_the_playground_streams_from_chat_stream(
    ingress: str, open_page: Callable[..., Page], new_account: Callable[[str], Account]
) -> None:
    page = open_page(ingress)
    log_in(page, new_account("Ada"))
    page.evaluate(RECORD_TEXTS, "#playground-output")

    prompt = page.get_by_label("Prompt")
    prompt.fill(f"Write a haiku about queues {SLOW}")
    prompt.press("Enter")

    output = page.locator("#playground-output")
    expect(output).to_have_attribute("data-state", "done", timeout=30_000)
    final = completion_text(TOKENS)
    expect(output).to_have_text(final)
    assert len(partial_texts(page, final)) >= 3
