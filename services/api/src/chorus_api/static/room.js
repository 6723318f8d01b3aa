// One room over the realtime WebSocket (/ws/{room}), kept alive across network blips.
//
// The protocol (services/realtime/README.md): the token rides in the second offered
// subprotocol ("bearer.<jwt>"), never in the URL. Every durable event carries its stream
// id; we remember the last one and reconnect with ?since=<id>, so the server replays
// exactly what we missed. Ids already seen are dropped, so a replay that overlaps what we
// have (or the history page) never shows a message twice.

import { Backoff } from "./backoff.js";

/**
 * Close codes after which reconnecting cannot help: bad token or room, flooding, too big,
 * 4401 — the token expired or was revoked (password changed, account deleted) — and 4403:
 * the room refused us or took our access away (removed, made private, deleted).
 */
const FINAL_CLOSE_CODES = new Set([1008, 1009, 4401, 4403]);
const SEEN_LIMIT = 20000;
/**
 * The first connection asks for the room's whole recent history ("0-0"): realtime replays
 * it when its stream still holds the room's first event (a young room), else says it could
 * not, and the stored history (the api) fills in — either way nothing said just before we
 * joined is missing while the worker has yet to store it.
 */
export const FROM_START = "0-0";
/** Messages kept while the socket is down; past this the composer keeps the text. */
const OUTBOX_LIMIT = 20;

/** Compare two stream ids "<ms>-<seq>" numerically. */
export function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

export class RoomConnection extends EventTarget {
  /**
   * Events dispatched: "frame" (detail: a server frame, durable ones once each),
   * "status" (detail: {state: connecting|live|reconnecting|offline|refused, reason?, code?}),
   * "resumed" (detail: the `subscribed` frame of a reconnection), "flushed" (detail: how
   * many queued messages went out), "unsent" (detail: the queued message frames, when the
   * room refused us and they never will).
   */
  constructor(room, token) {
    super();
    this.room = room;
    this.channel = `room:${room}`;
    this.token = token;
    this.lastId = FROM_START;
    this.seen = new Set();
    this.backoff = new Backoff();
    this.ws = null;
    this.timer = null;
    this.closed = false;
    this.held = false;
    this.refused = false;
    this.connections = 0;
    this.outbox = [];
  }

  open() {
    this.closed = false;
    this.connect();
    return this;
  }

  /** Leave the room for good. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "left the room");
    this.ws = null;
  }

  get live() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a client frame; false when not connected (the caller keeps the text). */
  send(frame) {
    if (!this.live) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Send a message now, or keep it until the room is live again, in order: a message typed
   * while connecting or during a blip is not lost. Returns "sent", "queued", or false when
   * the queue is full or the room refused us (the caller keeps the text).
   */
  post(frame) {
    if (this.outbox.length === 0 && this.send(frame)) return "sent";
    if (this.closed || this.refused || this.outbox.length >= OUTBOX_LIMIT) return false;
    this.outbox.push(frame);
    return "queued";
  }

  get queued() {
    return this.outbox.length;
  }

  /**
   * Drop the connection as a network failure would (a debugging and testing hook).
   * With hold, stay disconnected until release(): what others say meanwhile must come
   * back, once, on resume.
   */
  drop({ hold = false } = {}) {
    this.held = hold;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(4000, "dropped by the client");
  }

  /** End a held drop: reconnect now. */
  release() {
    if (!this.held) return;
    this.held = false;
    if (!this.ws && !this.closed) this.connect();
  }

  connect() {
    const url = new URL(`/ws/${encodeURIComponent(this.room)}`, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.lastId) url.searchParams.set("since", this.lastId);
    this.status(this.connections ? "reconnecting" : "connecting");
    const ws = new WebSocket(url, ["chorus.v1", `bearer.${this.token}`]);
    this.ws = ws;
    ws.addEventListener("message", (event) => {
      if (ws === this.ws) this.receive(JSON.parse(event.data));
    });
    ws.addEventListener("close", (event) => this.onClose(ws, event));
  }

  receive(frame) {
    if (frame.type === "subscribed") {
      if (frame.channel !== this.channel) return this.emit("frame", frame);
      this.connections += 1;
      this.backoff.reset();
      if ((!this.lastId || this.lastId === FROM_START) && frame.position) this.lastId = frame.position;
      this.status("live");
      if (frame.recovering && this.connections > 1) this.emit("resumed", frame);
      this.emit("frame", frame);
      return this.flush();
    }
    if (frame.type === "unsubscribed" && frame.channel === this.channel && frame.reason) {
      // Access taken away: the socket closes (4403); nothing after this was sent to us.
      this.refused = true;
      return this.emit("frame", frame);
    }
    if (frame.type === "reconnect") {
      // The replica is draining: resume from what it says it sent us.
      const position = frame.positions && frame.positions[this.channel];
      if (position) this.lastId = position;
      return undefined;
    }
    if (typeof frame.id === "string" && frame.channel) {
      if (this.seen.has(frame.id)) return undefined;
      this.remember(frame.id);
      if (frame.channel === this.channel && (!this.lastId || compareIds(frame.id, this.lastId) > 0)) {
        this.lastId = frame.id;
      }
    }
    return this.emit("frame", frame);
  }

  /** Send what was queued while the socket was down, oldest first. */
  flush() {
    if (this.outbox.length === 0) return;
    let sent = 0;
    while (this.outbox.length && this.send(this.outbox[0])) {
      this.outbox.shift();
      sent += 1;
    }
    if (sent) this.emit("flushed", sent);
  }

  remember(id) {
    this.seen.add(id);
    if (this.seen.size > SEEN_LIMIT) {
      const oldest = this.seen.values().next().value;
      this.seen.delete(oldest);
    }
  }

  onClose(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.closed) return;
    if (FINAL_CLOSE_CODES.has(event.code)) {
      this.refused = true;
      this.status("refused", event.reason || `closed (${event.code})`, event.code);
      if (this.outbox.length) this.emit("unsent", this.outbox.splice(0));
      return;
    }
    if (this.held) {
      this.status("offline");
      return;
    }
    // 1012: the replica is restarting and asked us to come back at once (elsewhere). Only
    // the first time: a second 1012 in a row (another draining replica) backs off.
    const immediate = event.code === 1012 && this.backoff.attempt === 0;
    const delay = this.backoff.next();
    this.status("reconnecting");
    this.timer = setTimeout(() => this.connect(), immediate ? 0 : delay);
  }

  status(state, reason, code) {
    this.emit("status", { state, reason, code });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
