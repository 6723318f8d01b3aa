// The LLM playground: POST /chat/stream, the answer shown as its tokens arrive.

import { explain } from "./api.js";
import { byId } from "./dom.js";
import { parseEventStream } from "./eventstream.js";

export class PlaygroundView {
  /** @param {import("./api.js").Api} api */
  constructor(api) {
    this.api = api;
    this.form = byId("playground-form");
    this.prompt = byId("prompt");
    this.output = byId("playground-output");
    this.error = byId("playground-error");
    this.stopButton = byId("playground-stop");
    this.abort = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.generate();
    });
    // Enter sends, Shift+Enter is a new line (as in the chat box).
    this.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.stopButton.addEventListener("click", () => this.abort && this.abort.abort());
  }

  async generate() {
    const content = this.prompt.value.trim();
    if (!content) return;
    if (this.abort) this.abort.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.error.textContent = "";
    this.output.textContent = "";
    this.output.dataset.state = "streaming";
    this.output.setAttribute("aria-busy", "true");
    this.stopButton.disabled = false;
    try {
      const response = await fetch("/chat/stream", {
        method: "POST",
        headers: this.api.headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify({ content }),
        signal: abort.signal,
      });
      if (!response.ok) throw this.api.failure(response.status, await response.json().catch(() => null));
      for await (const event of parseEventStream(response.body)) {
        if (event.event === "error") {
          const body = JSON.parse(event.data);
          this.error.textContent = (body.error && body.error.message) || body.message || "stream failed";
          continue;
        }
        if (event.data === "[DONE]") break;
        this.output.textContent += event.data;
      }
      this.output.dataset.state = "done";
    } catch (error) {
      this.output.dataset.state = abort.signal.aborted ? "stopped" : "failed";
      if (!abort.signal.aborted) this.error.textContent = explain(error);
    } finally {
      if (this.abort === abort) {
        this.abort = null;
        this.stopButton.disabled = true;
        this.output.removeAttribute("aria-busy");
      }
    }
  }
}
