// Orders: place one, cancel it while pending, and the dashboard's totals.

import { explain } from "./api.js";
import { byId, h, money } from "./dom.js";

/**
 * What a buyer may do from each status (services/api/README.md, Orders): cancel a pending
 * order. Paying and shipping are the shop's; their updates arrive as notifications.
 */
const NEXT = {
  pending: [["cancelled", "Cancel"]],
  paid: [],
  shipped: [],
  cancelled: [],
};

export class OrdersView {
  /** @param {import("./api.js").Api} api */
  constructor(api) {
    this.api = api;
    this.list = byId("order-list");
    this.error = byId("orders-error");
    byId("order-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create(event.target);
    });
  }

  async create(form) {
    this.error.textContent = "";
    const data = new FormData(form);
    try {
      await this.api.post("/api/orders", {
        item: String(data.get("item")).trim(),
        quantity: Number(data.get("quantity")),
        amount_cents: Math.round(Number(data.get("amount")) * 100),
      });
      form.reset();
      byId("order-item").focus();
      await this.refresh();
    } catch (error) {
      this.error.textContent = explain(error);
    }
  }

  async move(order, status) {
    this.error.textContent = "";
    try {
      await this.api.patch(`/api/orders/${order.id}`, { status });
      await this.refresh();
    } catch (error) {
      this.error.textContent = explain(error);
    }
  }

  /** Totals and the newest orders (called after every change, including other tabs'). */
  async refresh() {
    const [dashboard, page] = await Promise.all([
      this.api.get("/api/dashboard"),
      this.api.get("/api/orders?limit=20"),
    ]);
    this.showTotals(dashboard.stats);
    this.list.replaceChildren(
      ...page.items.map((order) =>
        h(
          "li",
          { dataset: { orderId: order.id, status: order.status } },
          h("span", { class: "text" }, `#${order.id} ${order.quantity} × ${order.item} — ${money(order.amount_cents)}`),
          " ",
          h("span", { class: `status status-${order.status}` }, order.status),
          ...NEXT[order.status].map(([status, label]) =>
            h("button", { type: "button", class: "small", onclick: () => this.move(order, status), "aria-label": `${label}: order #${order.id}` }, label),
          ),
        ),
      ),
    );
    return dashboard;
  }

  showTotals(stats) {
    byId("total-orders").textContent = String(stats.orders);
    byId("total-spent").textContent = money(stats.total_spent_cents);
    byId("total-messages").textContent = String(stats.messages_sent);
  }
}
