// Keys: create a gateway key (its secret shown once), list keys with their spend, revoke.

import { explain } from "./api.js";
import { byId, h } from "./dom.js";

const MICROS = 1_000_000;

/** "$0.000180" for 180 micros: budgets are whole cents, spend may be far less. */
function dollars(micros) {
  const value = micros / MICROS;
  const digits = value !== 0 && Math.abs(value) < 0.01 ? 6 : 2;
  return `$${value.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits })}`;
}

const PERIODS = { day: "today", month: "this month", total: "in total" };

export class KeysView {
  /** @param {import("./api.js").Api} api */
  constructor(api) {
    this.api = api;
    this.list = byId("key-list");
    this.error = byId("keys-error");
    this.secretBox = byId("key-secret-box");
    this.secret = byId("key-secret");
    byId("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create(event.target);
    });
    byId("key-copy").addEventListener("click", () => this.copy());
  }

  async create(form) {
    this.error.textContent = "";
    const data = new FormData(form);
    const body = { name: String(data.get("name")).trim() };
    const budget = String(data.get("budget") || "").trim();
    if (budget) body.budget = { amount_micros: Math.round(Number(budget) * MICROS), period: "month" };
    try {
      const created = await this.api.post("/api/keys", body);
      form.reset();
      this.secret.textContent = created.secret;
      this.secretBox.hidden = false;
      byId("key-copy").textContent = "Copy";
      await this.refresh();
    } catch (error) {
      this.error.textContent = explain(error);
    }
  }

  async copy() {
    try {
      await navigator.clipboard.writeText(this.secret.textContent);
      byId("key-copy").textContent = "Copied";
    } catch {
      // No clipboard permission: select the text so Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(this.secret);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
  }

  async revoke(key) {
    this.error.textContent = "";
    try {
      await this.api.delete(`/api/keys/${key.id}`);
      await this.refresh();
    } catch (error) {
      this.error.textContent = explain(error);
    }
  }

  /** Forget a secret still on screen (signing out). */
  clear() {
    this.secret.textContent = "";
    this.secretBox.hidden = true;
    this.list.replaceChildren();
  }

  async refresh() {
    const keys = await this.api.get("/api/keys");
    this.list.replaceChildren(
      ...keys.map((key) => {
        const budget = key.budget
          ? `${dollars(key.budget.spent_micros || 0)} of ${dollars(key.budget.amount_micros)} ${PERIODS[key.budget.period]}`
          : "no budget";
        return h(
          "li",
          { dataset: { keyId: key.id } },
          h("span", { class: "text" }, `${key.name} — ${key.prefix}… — ${budget}`),
          " ",
          h("button", { type: "button", class: "small", onclick: () => this.revoke(key), "aria-label": `Revoke key ${key.name}` }, "Revoke"),
        );
      }),
    );
  }
}
