// The notification list: the ten newest from the dashboard, then live from /events.
// Direct messages are counted in the conversation list instead of listed here.

import { byId, clock, h, money } from "./dom.js";
import { UserEvents } from "./userevents.js";

/** Live events that are not notifications to list (the conversation list shows them). */
const UNLISTED = new Set(["dm.message"]);

/** A sentence for a notification type and its data. */
export function describe(type, data) {
  const order = data.order || {};
  switch (type) {
    case "welcome.sent":
      return "Welcome e-mail sent";
    case "order.created":
      return `Order #${order.id} created: ${order.quantity} × ${order.item} (${money(order.amount_cents)})`;
    case "order.updated":
      return `Order #${order.id} is now ${order.status}`;
    case "order.deleted":
      return `Order #${data.order_id} deleted`;
    case "room.invited":
      return `${data.inviter || "Someone"} invited you to #${data.room}`;
    default:
      return type;
  }
}

export class NotificationsView extends EventTarget {
  /** Dispatches "notification" (detail: {type, data}) for each live one. */
  constructor() {
    super();
    this.list = byId("notification-list");
    this.state = byId("notifications-state");
    this.shown = new Set();
    this.stream = null;
  }

  /**
   * Start the live stream; resolves once it is subscribed (or after `patience` ms, so a
   * realtime outage does not hold the page): load the stored list after that, and
   * nothing published in between is missed (overlaps are shown once).
   */
  start(token, patience = 3000) {
    this.stop();
    this.list.replaceChildren();
    this.shown.clear();
    this.stream = new UserEvents(token);
    const subscribed = new Promise((resolve) => {
      this.stream.addEventListener("status", (event) => {
        const { state } = event.detail;
        this.state.textContent = state === "live" ? "" : `live updates: ${state}…`;
        this.list.dataset.state = state;
        if (state === "live" || state === "refused") resolve();
      });
      setTimeout(resolve, patience);
    });
    this.stream.addEventListener("event", (event) => {
      const frame = event.detail;
      if (!UNLISTED.has(frame.type)) this.add(frame.data.notification_id, frame.type, frame.data, frame.ts);
      this.dispatchEvent(new CustomEvent("notification", { detail: frame }));
    });
    this.stream.start();
    return subscribed;
  }

  /** The stored notifications (newest first), below anything that arrived live. */
  addStored(notifications) {
    for (const n of notifications) this.add(n.id, n.type, n.data, n.created_at, { older: true });
  }

  stop() {
    if (this.stream) this.stream.stop();
    this.stream = null;
  }

  /** Newest on top (stored ones at the bottom); a notification id is shown once. */
  add(id, type, data, ts, { older = false } = {}) {
    if (id !== undefined && id !== null) {
      if (this.shown.has(id)) return;
      this.shown.add(id);
    }
    const item = h(
        "li",
        { dataset: { type, notificationId: id ?? "" } },
        h("span", { class: "text" }, describe(type, data)),
        " ",
      h("time", { datetime: ts }, clock(ts)),
    );
    if (older) this.list.append(item);
    else this.list.prepend(item);
  }
}
