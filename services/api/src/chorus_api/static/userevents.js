// The signed-in user's notification stream (GET /events, Server-Sent Events), resumed
// with Last-Event-ID after any interruption.

import { Backoff } from "./backoff.js";
import { parseEventStream } from "./eventstream.js";

export class UserEvents extends EventTarget {
  /** Events: "event" (detail: an envelope, once per stream id), "status" ({state}). */
  constructor(token) {
    super();
    this.token = token;
    this.lastId = null;
    this.seen = new Set();
    this.backoff = new Backoff();
    this.abort = null;
    this.stopped = false;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
  }

  async run() {
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        await this.session(this.abort.signal);
      } catch (error) {
        if (this.stopped) return;
        if (error && error.final) {
          this.status("refused");
          return;
        }
      }
      if (this.stopped) return;
      this.status("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, this.backoff.next()));
    }
  }

  async session(signal) {
    const headers = { Authorization: `Bearer ${this.token}`, Accept: "text/event-stream" };
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const response = await fetch("/events", { headers, signal, cache: "no-store" });
    if (response.status === 401 || response.status === 403) {
      throw Object.assign(new Error("not allowed"), { final: true });
    }
    if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
    for await (const message of parseEventStream(response.body)) {
      const frame = JSON.parse(message.data);
      if (frame.type === "subscribed") {
        this.backoff.reset();
        if (!this.lastId && frame.position) this.lastId = frame.position;
        this.status("live");
        continue;
      }
      if (frame.type === "reconnect") break;
      if (typeof frame.id !== "string") continue;
      this.lastId = message.id || frame.id;
      if (this.seen.has(frame.id)) continue;
      this.seen.add(frame.id);
      this.dispatchEvent(new CustomEvent("event", { detail: frame }));
    }
  }

  status(state) {
    this.dispatchEvent(new CustomEvent("status", { detail: { state } }));
  }
}
