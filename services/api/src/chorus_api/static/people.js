// People, not numbers: display names by user id, learned from what arrives and asked for once.
//
// Realtime events carry the speaker's name (data.name); member lists and presence carry
// them too. For anyone else (old history, a name not seen yet) the public profile is
// fetched once (GET /api/users/{id}/profile — an id and a display name, never an e-mail).
// Elements made with person() are updated in place when a name arrives.

export class People {
  /** @param {import("./api.js").Api} api  @param {() => (number|null)} myId */
  constructor(api, myId) {
    this.api = api;
    this.myId = myId;
    this.names = new Map(); // user id (string) -> display name
    this.asked = new Set();
  }

  /** Remember a name seen in an event, a member list or presence. */
  learn(id, name) {
    if (id === undefined || id === null || !name) return;
    const key = String(id);
    if (this.names.get(key) === name) return;
    this.names.set(key, name);
    for (const el of document.querySelectorAll(`[data-person="${CSS.escape(key)}"]`)) {
      el.textContent = this.label(key);
    }
  }

  /** "You", "Assistant", the display name, or "user #id" until the name is known. */
  label(id) {
    const key = String(id);
    if (key === "assistant") return "Assistant";
    if (key === String(this.myId())) return "You";
    const name = this.names.get(key);
    if (name) return name;
    this.ask(key);
    return `user #${key}`;
  }

  /** A span naming the person, kept up to date. */
  person(id, name) {
    this.learn(id, name);
    const span = document.createElement("span");
    span.dataset.person = String(id);
    span.textContent = this.label(id);
    return span;
  }

  async ask(key) {
    if (this.asked.has(key) || !/^\d+$/.test(key)) return;
    this.asked.add(key);
    try {
      const profile = await this.api.get(`/api/users/${key}/profile`);
      this.learn(profile.id, profile.display_name);
    } catch {
      // An account deleted since: it stays "user #id".
    }
  }
}
