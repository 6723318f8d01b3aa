// The room view: live messages in stream order, history scroll-back, presence, typing,
// the assistant's streamed answers, members, and the connection's state — including the
// room taking our access away (removed, made private, deleted: close 4403).

import { explain } from "./api.js";
import { byId, clock, h } from "./dom.js";
import { compareIds, RoomConnection } from "./room.js";

const TYPING_SHOWN_MS = 4000;
const TYPING_SENT_EVERY_MS = 2000;
const HISTORY_PAGE = 30;
const READ_MARK_DELAY_MS = 1000;

/** What the page says when a room ends our access (the reason realtime gives). */
const ENDED = {
  removed: "You were removed from this room: nothing more of it reaches you.",
  left: "You left this room.",
  private: "This room became private and you are not a member: nothing more of it reaches you.",
  deleted: "This room was deleted.",
  recheck: "Your access to this room was withdrawn.",
};

export class ChatView extends EventTarget {
  /**
   * @param {import("./api.js").Api} api  @param {() => {id: number, token: string}} me
   * @param {import("./people.js").People} people
   * @param {import("./members.js").MembersPanel} members
   */
  constructor(api, me, people, members) {
    super();
    this.api = api;
    this.me = me;
    this.people = people;
    this.members = members;
    this.connection = null;
    this.ended = null;
    this.readTimer = null;
    this.newestSeen = null;
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
    /** Whether we are a member of a room (its member list and read marks are ours). */
    this.isMember = () => false;
    byId("join-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const room = byId("room-name").value.trim();
      this.join(room, { title: `#${room}`, member: this.isMember(room) });
    });
    this.elements.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendMessage();
    });
    this.elements.input.addEventListener("input", () => this.sendTyping());
    this.elements.older.addEventListener("click", () => this.loadOlder());
  }

  /**
   * Open ``room`` (``title``: what to call it — a conversation shows the other person;
   * ``member``: ours, so its members are shown and read marks kept).
   */
  join(room, { title = `#${room}`, member = false } = {}) {
    this.leave();
    this.room = room;
    this.ended = null;
    this.newestSeen = null;
    this.dispatchEvent(new CustomEvent("joined", { detail: { room } }));
    const { messages } = this.elements;
    messages.replaceChildren();
    this.items.clear();
    this.answers.clear();
    this.oldestLoaded = null;
    this.historyLoaded = false;
    this.joinedAt = null;
    this.elements.title.textContent = title;
    this.elements.room.dataset.room = room;
    delete this.elements.room.dataset.ended;
    this.notice("");
    if (member) this.members.show(room).catch(() => {});
    else this.members.hide();
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
    clearTimeout(this.readTimer);
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
          // What the first connection replays up to is the room's past: its joins and
          // leaves are not news.
          this.joinedAt = frame.position;
          this.loadOlder();
        }
        this.refreshPresence();
        break;
      case "message":
        this.people.learn(frame.from, frame.data.name);
        this.stopTyping(frame.from);
        this.addMessage(frame);
        this.markRead(frame.id);
        break;
      case "join":
      case "leave":
        this.people.learn(frame.data.user_id, frame.data.name);
        if (this.isNews(frame) && String(frame.data.user_id) !== String(this.me().id)) this.addSystem(frame);
        this.refreshPresence();
        break;
      case "typing":
        this.people.learn(frame.from, frame.data.name);
        if (String(frame.from) !== String(this.me().id)) this.startTyping(frame.from);
        break;
      case "member.added":
      case "member.removed":
      case "member.updated":
      case "room.updated":
        this.people.learn(frame.data.user_id, frame.data.name);
        if (this.isNews(frame)) this.addMembership(frame);
        this.members.refresh().catch(() => {});
        break;
      case "unsubscribed":
        if (frame.channel === `room:${this.room}` && frame.reason) this.endAccess(frame.reason);
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
    if (code === 4403 && !this.ended) {
      // Refused at the door (a private room, a stranger's conversation).
      this.notice("You may not enter this room: only its members may.", "error");
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

  /** An event from after we joined (not the past the first connection replayed). */
  isNews(frame) {
    return !this.joinedAt || compareIds(frame.id, this.joinedAt) > 0;
  }

  /** The room took our access away: say so; the socket is closing and nothing more comes. */
  endAccess(reason) {
    this.ended = reason;
    clearTimeout(this.readTimer);
    this.notice(ENDED[reason] || "Your access to this room ended.", "error");
    this.elements.room.dataset.ended = reason;
    this.members.hide();
    this.elements.typing.textContent = "";
    this.dispatchEvent(new CustomEvent("ended", { detail: { room: this.room, reason } }));
  }

  /** Tell the api what we have read (debounced; only rooms we are a member of keep marks). */
  markRead(id) {
    if (!this.newestSeen || compareIds(id, this.newestSeen) > 0) this.newestSeen = id;
    const info = this.members.info;
    if (!info || !info.role || this.ended) return;
    clearTimeout(this.readTimer);
    const room = this.room;
    this.readTimer = setTimeout(() => {
      if (this.ended || room !== this.room) return; // access gone: the mark would be refused
      this.api.post(`/api/rooms/${encodeURIComponent(room)}/read`, { id: this.newestSeen }).catch(() => {});
    }, READ_MARK_DELAY_MS);
  }

  notice(text, kind = "") {
    this.elements.notice.textContent = text;
    this.elements.notice.dataset.kind = kind;
  }

  // -- rendering -----------------------------------------------------------------------


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
        h(
          "span",
          { class: "meta" },
          h("b", {}, this.people.person(frame.from, frame.data.name)),
          " ",
          h("time", { datetime: frame.ts }, clock(frame.ts)),
        ),
        h("span", { class: "text" }, frame.data.message),
      ),
    );
  }

  addSystem(frame) {
    const verb = frame.type === "join" ? "joined" : "left";
    this.place(
      frame.id,
      h("li", { class: "system", dataset: { id: frame.id } }, this.people.person(frame.data.user_id, frame.data.name), ` ${verb}`),
    );
  }

  /** A change of the room's members or settings, as a line in the room. */
  addMembership(frame) {
    const data = frame.data;
    let text;
    if (frame.type === "member.added") text = " is now a member";
    else if (frame.type === "member.removed") text = data.reason === "left" ? " left the members" : " was removed";
    else if (frame.type === "member.updated") text = ` is now ${data.role}`;
    else {
      this.place(frame.id, h("li", { class: "system", dataset: { id: frame.id } }, `The room is now ${data.visibility}.`));
      return;
    }
    this.place(frame.id, h("li", { class: "system", dataset: { id: frame.id } }, this.people.person(data.user_id, data.name), text));
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
        this.people.learn(frame.from, frame.data.name);
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
          h(
            "li",
            { dataset: { userId: m.user_id } },
            this.people.person(m.user_id, m.name),
            m.connections > 1 ? ` (${m.connections} connections)` : "",
          ),
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
    const who = [...this.typing.keys()].map((id) => this.people.label(id));
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
