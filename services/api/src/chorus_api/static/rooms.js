// The rooms beside the chat: create one, your rooms, your conversations (with unread
// counts), invitations to accept or decline, and the directory of public rooms.

import { explain } from "./api.js";
import { byId, h } from "./dom.js";

const SEARCH_DELAY_MS = 250;

export class RoomsNav extends EventTarget {
  /**
   * Dispatches "open" (detail: {room, title, kind}) when a room or a conversation is
   * chosen. @param {import("./api.js").Api} api @param {import("./people.js").People} people
   */
  constructor(api, people) {
    super();
    this.api = api;
    this.people = people;
    this.current = null;
    this.mine = new Set(); // names of the rooms we are a member of
    this.dms = new Map(); // room -> {peer, unread}
    this.elements = {
      mine: byId("my-rooms"),
      dms: byId("dm-list"),
      invitations: byId("invitation-list"),
      invitationsTitle: byId("invitations-title"),
      createForm: byId("create-room-form"),
      createError: byId("create-room-error"),
      search: byId("directory-search"),
      directory: byId("directory-list"),
    };
    this.elements.createForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.create(event.target);
    });
    let timer = null;
    this.elements.search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.searchDirectory(), SEARCH_DELAY_MS);
    });
  }

  async refresh() {
    await Promise.all([this.loadRooms(), this.loadDms(), this.loadInvitations()]);
  }

  open(room, title, kind = "room", member = this.isMember(room)) {
    this.current = room;
    const dm = this.dms.get(room);
    if (dm) {
      dm.unread = 0;
      this.renderDms();
    }
    this.dispatchEvent(new CustomEvent("open", { detail: { room, title, kind, member } }));
  }

  // -- rooms ---------------------------------------------------------------------------

  async create(form) {
    this.elements.createError.textContent = "";
    const data = new FormData(form);
    const name = String(data.get("name")).trim();
    try {
      await this.api.post("/api/rooms", { name, visibility: String(data.get("visibility")) });
    } catch (error) {
      this.elements.createError.textContent = explain(error);
      return;
    }
    form.reset();
    await this.loadRooms();
    this.open(name, `#${name}`, "room", true);
  }

  /** Drop a room that took our access away (the api may not have committed that yet). */
  forget(room) {
    this.mine.delete(room);
    this.elements.mine.querySelector(`li[data-room="${CSS.escape(room)}"]`)?.remove();
  }

  async loadRooms() {
    const page = await this.api.get("/api/rooms?kind=room&limit=100");
    this.mine = new Set(page.items.map((room) => room.name));
    this.elements.mine.replaceChildren(
      ...page.items.map((room) =>
        h(
          "li",
          { dataset: { room: room.name } },
          h("button", { type: "button", class: "link", onclick: () => this.open(room.name, `#${room.name}`) }, `#${room.name}`),
          " ",
          h("span", { class: `badge ${room.visibility}` }, room.visibility === "private" ? "private" : "public"),
          room.role && room.role !== "member" ? h("span", { class: "badge" }, room.role) : null,
        ),
      ),
    );
    if (!page.items.length) this.elements.mine.append(h("li", { class: "hint" }, "None yet: create one or join by name."));
  }

  async searchDirectory() {
    const prefix = this.elements.search.value.trim();
    if (!prefix || !/^[A-Za-z0-9_.-]{1,64}$/.test(prefix)) {
      this.elements.directory.replaceChildren();
      return;
    }
    try {
      const page = await this.api.get(`/api/rooms?scope=public&limit=20&prefix=${encodeURIComponent(prefix)}`);
      this.elements.directory.replaceChildren(
        ...page.items.map((room) =>
          h(
            "li",
            {},
            h("button", { type: "button", class: "link", onclick: () => this.open(room.name, `#${room.name}`) }, `#${room.name}`),
            ` ${room.member_count} member${room.member_count === 1 ? "" : "s"}`,
            room.topic ? h("span", { class: "hint" }, ` — ${room.topic}`) : null,
          ),
        ),
      );
    } catch (error) {
      this.elements.directory.replaceChildren(h("li", { class: "error" }, explain(error)));
    }
  }

  // -- direct messages -----------------------------------------------------------------

  /** Open (or make) the conversation with a user and show it. */
  async startDm(userId) {
    const room = await this.api.post("/api/dms", { user_id: userId });
    await this.loadDms();
    this.open(room.name, this.dmTitle(room.name), "dm", true);
  }

  dmTitle(room) {
    const dm = this.dms.get(room);
    return dm && dm.peer ? dm.peer.display_name : "Conversation";
  }

  async loadDms() {
    const page = await this.api.get("/api/dms?limit=100");
    this.dms = new Map(
      page.items.map((dm) => [dm.room, { peer: dm.peer, unread: dm.room === this.current ? 0 : dm.unread }]),
    );
    for (const dm of page.items) if (dm.peer) this.people.learn(dm.peer.id, dm.peer.display_name);
    this.renderDms();
  }

  renderDms() {
    const items = [...this.dms.entries()].map(([room, dm]) =>
      h(
        "li",
        { dataset: { room, unread: String(dm.unread) } },
        h(
          "button",
          { type: "button", class: "link", onclick: () => this.open(room, this.dmTitle(room), "dm") },
          dm.peer ? this.people.person(dm.peer.id, dm.peer.display_name) : "(deleted account)",
        ),
        dm.unread
          ? h("span", { class: "badge unread", "aria-label": `${dm.unread} unread` }, dm.unread >= 100 ? "99+" : String(dm.unread))
          : null,
      ),
    );
    this.elements.dms.replaceChildren(...items);
    if (!items.length) this.elements.dms.append(h("li", { class: "hint" }, "None yet: message someone from a member list."));
  }

  /** A dm.message notification: one more unread, unless that conversation is open. */
  async onDirectMessage(data) {
    this.people.learn(data.user_id, data.name);
    if (!this.dms.has(data.room)) {
      // A new conversation: its first messages may not be in the stored history yet.
      await this.loadDms();
      const dm = this.dms.get(data.room);
      if (dm && data.room !== this.current && dm.unread === 0) {
        dm.unread = 1;
        this.renderDms();
      }
      return;
    }
    if (data.room !== this.current) {
      this.dms.get(data.room).unread += 1;
      this.renderDms();
    }
  }

  /** Whether we are a member of ``room`` (our rooms and conversations, as last loaded). */
  isMember(room) {
    return this.mine.has(room) || this.dms.has(room);
  }

  // -- invitations ---------------------------------------------------------------------

  async loadInvitations() {
    const invitations = await this.api.get("/api/invitations");
    this.elements.invitationsTitle.hidden = invitations.length === 0;
    this.elements.invitations.replaceChildren(
      ...invitations.map((invitation) =>
        h(
          "li",
          { dataset: { invitation: String(invitation.id), room: invitation.room } },
          h("span", {}, `${invitation.inviter || "Someone"} invited you to #${invitation.room}`),
          invitation.role === "admin" ? " as admin" : "",
          " ",
          h("button", { type: "button", class: "small", onclick: () => this.answer(invitation, true) }, "Accept"),
          h("button", { type: "button", class: "small", onclick: () => this.answer(invitation, false) }, "Decline"),
        ),
      ),
    );
  }

  async answer(invitation, accept) {
    try {
      if (accept) await this.api.post(`/api/invitations/${invitation.id}/accept`);
      else await this.api.delete(`/api/invitations/${invitation.id}`);
    } catch (error) {
      this.elements.createError.textContent = explain(error);
    }
    await Promise.all([this.loadInvitations(), this.loadRooms()]);
    if (accept) this.open(invitation.room, `#${invitation.room}`, "room", true);
  }
}
