// The room view: live messages in stream order, history scroll-back, presence, typing,
// the assistant's streamed answers, and the connection's state.

import { explain } from "./api.js";
import { byId, clock, h } from "./dom.js";
import { compareIds, RoomConnection } from "./room.js";

const TYPING_SHOWN_MS = 4000;
const TYPING_SENT_EVERY_MS = 2000;
const HISTORY_PAGE = 30;

export class ChatView {
  /** @param {import("./api.js").Api} api  @param {() => {id: number, token: string}} me */
  constructor(api, me) {
    this.api = api;
    this.me = me;
    this.connection = null;
    this.items = new Map(); // sort key -> <li>, kept in stream order
    this.answers = new Map(); // reply_to id -> assistant <li>
    this.typing = new Map(); // user id -> timer
    this.lastTypingSent = 0;
    this.oldestLoaded = null;
    this.elements = {
      room: byId("room"),
      title: byId("room-title"),
      connection: byId("room-connection"),
      notice: byId("room-notice"),
      messages: byId("messages"),
      typing: byId("typing"),
      older: byId("load-older"),
      presenceCount: byId("presence-count"),
      presenceList: byId("presence-list"),
      composer: byId("composer"),
      input: byId("message"),
    };
    byId("join-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.join(byId("room-name").value.trim());
    });
    this.elements.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendMessage();
    });
    this.elements.input.addEventListener("input", () => this.sendTyping());
    this.elements.older.addEventListener("click", () => this.loadOlder());
  }

  join(room) {
    this.leave();
    this.room = room;
    const { messages, title } = this.elements;
    messages.replaceChildren();
    this.items.clear();
    this.answers.clear();
    this.oldestLoaded = null;
    this.historyLoaded = false;
    title.textContent = `#${room}`;
    this.notice("");
    this.elements.room.hidden = false;
    this.elements.older.hidden = true;
    const connection = new RoomConnection(room, this.me().token);
    connection.addEventListener("frame", (event) => this.onFrame(event.detail));
    connection.addEventListener("status", (event) => this.onStatus(event.detail));
    connection.addEventListener("resumed", (event) => this.onResumed(event.detail));
    connection.addEventListener("flushed", (event) => this.onFlushed(event.detail));
    connection.addEventListener("unsent", (event) => this.onUnsent(event.detail));
    this.connection = connection.open();
    this.elements.input.focus();
  }

  leave() {
    if (this.connection) this.connection.close();
    this.connection = null;
    for (const timer of this.typing.values()) clearTimeout(timer);
    this.typing.clear();
    this.renderTyping();
  }

  // -- frames --------------------------------------------------------------------------

  onFrame(frame) {
    switch (frame.type) {
      case "subscribed":
        if (!this.historyLoaded) {
          this.historyLoaded = true;
          this.loadOlder();
        }
        this.refreshPresence();
        break;
      case "message":
        this.stopTyping(frame.from);
        this.addMessage(frame);
        break;
      case "join":
      case "leave":
        if (String(frame.data.user_id) !== String(this.me().id)) this.addSystem(frame);
        this.refreshPresence();
        break;
      case "typing":
        if (String(frame.from) !== String(this.me().id)) this.startTyping(frame.from);
        break;
      case "ai.delta":
        this.onDelta(frame);
        break;
      case "ai.done":
        this.onDone(frame);
        break;
      case "error":
        this.notice(frame.data.message || "error", "error");
        break;
      default:
        break;
    }
  }

  onStatus({ state, reason, code }) {
    if (code === 4401) {
      // The token expired or was revoked: the whole session is over, not just this room.
      this.api.onUnauthorized(new Error(reason));
      return;
    }
    const labels = {
      connecting: "connecting…",
      live: "connected",
      reconnecting: "connection lost, reconnecting…",
      offline: "offline",
      refused: `disconnected: ${reason}`,
    };
    this.elements.connection.textContent = labels[state] || state;
    this.elements.connection.dataset.state = state;
  }

  onResumed(subscribed) {
    if (subscribed.recovered) {
      const n = subscribed.replayed || 0;
      this.notice(`Reconnected, recovered ${n} missed event${n === 1 ? "" : "s"}.`, "ok");
    } else {
      this.notice("Reconnected; too much was missed to replay, history reloaded.", "warn");
      this.loadLatest();
    }
  }

  onFlushed(count) {
    if (this.elements.notice.dataset.kind === "queued") {
      this.notice(`Connected: sent ${count} waiting message${count === 1 ? "" : "s"}.`, "ok");
    }
  }

  /** The room refused us with messages still queued: give their text back to the composer. */
  onUnsent(frames) {
    const { input } = this.elements;
    input.value = [...frames.map((frame) => frame.message), input.value].filter(Boolean).join("\n");
    this.notice("Not sent: the room closed the connection; your messages are back in the box.", "error");
  }

  notice(text, kind = "") {
    this.elements.notice.textContent = text;
    this.elements.notice.dataset.kind = kind;
  }

  // -- rendering -----------------------------------------------------------------------

  author(from) {
    if (from === "assistant") return "Assistant";
    return String(from) === String(this.me().id) ? "You" : `user #${from}`;
  }

  /** Put `li` at its place in stream order (key = a stream id); false if already there. */
  place(key, li) {
    if (this.items.has(key)) return false;
    this.items.set(key, li);
    li.dataset.key = key;
    const { messages } = this.elements;
    const stick = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
    let before = null;
    for (let node = messages.lastElementChild; node; node = node.previousElementSibling) {
      if (compareIds(node.dataset.key, key) < 0) break;
      before = node;
    }
    messages.insertBefore(li, before);
    if (stick && !before) messages.scrollTop = messages.scrollHeight;
    return true;
  }

  addMessage(frame) {
    const mine = String(frame.from) === String(this.me().id);
    this.place(
      frame.id,
      h(
        "li",
        { class: `msg${mine ? " mine" : ""}`, dataset: { id: frame.id, from: frame.from } },
        h("span", { class: "meta" }, h("b", {}, this.author(frame.from)), " ", h("time", { datetime: frame.ts }, clock(frame.ts))),
        h("span", { class: "text" }, frame.data.message),
      ),
    );
  }

  addSystem(frame) {
    const verb = frame.type === "join" ? "joined" : "left";
    this.place(frame.id, h("li", { class: "system", dataset: { id: frame.id } }, `${this.author(frame.data.user_id)} ${verb}`));
  }

  answer(replyTo, key) {
    let li = this.answers.get(replyTo);
    if (!li) {
      li = h(
        "li",
        { class: "msg assistant", dataset: { replyTo, state: "streaming" }, "aria-busy": "true" },
        h("span", { class: "meta" }, h("b", {}, "Assistant")),
        h("span", { class: "text" }),
      );
      this.answers.set(replyTo, li);
      this.place(key, li);
    }
    return li;
  }

  onDelta(frame) {
    const { reply_to: replyTo, delta, index } = frame.data;
    const li = this.answer(replyTo, frame.id);
    if (li.dataset.state === "done") return;
    const text = li.querySelector(".text");
    // A redelivered job starts its answer over at index 0: replace, do not append.
    if (index === 0) text.textContent = delta;
    else text.textContent += delta;
  }

  onDone(frame) {
    const { reply_to: replyTo, message, error } = frame.data;
    const li = this.answer(replyTo, frame.id);
    li.querySelector(".text").textContent = message;
    li.dataset.state = "done";
    li.dataset.id = frame.id;
    li.removeAttribute("aria-busy");
    if (error && !li.querySelector(".error")) {
      li.append(h("span", { class: "error" }, ` (${error.message || error.code})`));
    }
  }

  // -- history and presence ------------------------------------------------------------

  /** One page of stored messages older than the oldest shown (newest first from the api). */
  async loadOlder() {
    const room = this.room;
    const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (this.oldestLoaded) params.set("before", this.oldestLoaded);
    try {
      const page = await this.api.get(`/api/rooms/${encodeURIComponent(room)}/messages?${params}`);
      if (room !== this.room) return;
      for (const frame of page.items) {
        if (this.connection) this.connection.remember(frame.id);
        if (frame.type === "message") this.addMessage(frame);
        else if (frame.type === "ai.done") this.onDone(frame);
        if (!this.oldestLoaded || compareIds(frame.id, this.oldestLoaded) < 0) {
          this.oldestLoaded = frame.id;
        }
      }
      this.elements.older.hidden = !page.next_cursor;
    } catch (error) {
      this.notice(`History unavailable: ${explain(error)}`, "error");
    }
  }

  /** After a resume that could not replay: reload the newest page. */
  loadLatest() {
    this.oldestLoaded = null;
    this.loadOlder();
  }

  async refreshPresence() {
    const room = this.room;
    try {
      const presence = await this.api.get(`/rooms/${encodeURIComponent(room)}/presence`);
      if (room !== this.room) return;
      this.elements.presenceCount.textContent = String(presence.count);
      this.elements.presenceList.replaceChildren(
        ...presence.members.map((m) =>
          h("li", { dataset: { userId: m.user_id } }, this.author(m.user_id), m.connections > 1 ? ` (${m.connections} connections)` : ""),
        ),
      );
    } catch {
      // Presence is decoration: the next join or leave refreshes it.
    }
  }

  // -- typing and sending --------------------------------------------------------------

  startTyping(from) {
    clearTimeout(this.typing.get(from));
    this.typing.set(from, setTimeout(() => this.stopTyping(from), TYPING_SHOWN_MS));
    this.renderTyping();
  }

  stopTyping(from) {
    if (!this.typing.has(from)) return;
    clearTimeout(this.typing.get(from));
    this.typing.delete(from);
    this.renderTyping();
  }

  renderTyping() {
    const who = [...this.typing.keys()].map((id) => this.author(id));
    this.elements.typing.textContent = who.length
      ? `${who.join(", ")} ${who.length === 1 ? "is" : "are"} typing…`
      : "";
  }

  sendTyping() {
    const now = Date.now();
    if (!this.connection || now - this.lastTypingSent < TYPING_SENT_EVERY_MS) return;
    if (this.connection.send({ type: "typing" })) this.lastTypingSent = now;
  }

  sendMessage() {
    const { input } = this.elements;
    const text = input.value.trim();
    if (!text || !this.connection) return;
    const outcome = this.connection.post({ type: "message", message: text });
    if (!outcome) {
      const why = this.connection.refused
        ? "the room closed the connection; join again to send it"
        : "too many messages are waiting for the connection; send it again once connected";
      this.notice(`Not sent: ${why}.`, "warn");
      return;
    }
    input.value = "";
    this.lastTypingSent = 0;
    if (outcome === "queued") {
      const n = this.connection.queued;
      this.notice(`Not connected yet: ${n} message${n === 1 ? "" : "s"} will be sent once connected.`, "queued");
    }
  }
}
