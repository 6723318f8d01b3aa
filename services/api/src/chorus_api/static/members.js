// The members of the open room: names and roles; for its owner and admins, inviting by
// e-mail, changing roles and removing people; for everyone, a conversation with a member.

import { explain } from "./api.js";
import { byId, h } from "./dom.js";

const ROLES = ["member", "admin", "owner"];

export class MembersPanel extends EventTarget {
  /**
   * Dispatches "message" (detail: {userId}) to start a conversation with a member.
   * @param {import("./api.js").Api} api @param {import("./people.js").People} people
   * @param {() => number|null} myId
   */
  constructor(api, people, myId) {
    super();
    this.api = api;
    this.people = people;
    this.myId = myId;
    this.room = null;
    this.info = null;
    this.elements = {
      panel: byId("room-members"),
      count: byId("member-count"),
      list: byId("member-list"),
      inviteForm: byId("invite-form"),
      inviteEmail: byId("invite-email"),
      error: byId("members-error"),
      status: byId("members-status"),
      settings: byId("room-settings"),
      private: byId("room-private"),
    };
    this.elements.inviteForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.invite();
    });
    this.elements.private.addEventListener("change", () => this.setPrivate(this.elements.private.checked));
  }

  /** Show the panel for ``room`` (hidden for rooms that exist only by name). */
  async show(room) {
    this.room = room;
    this.info = null;
    this.elements.error.textContent = "";
    this.elements.status.textContent = "";
    this.elements.panel.hidden = true;
    await this.refresh();
  }

  hide() {
    this.room = null;
    this.elements.panel.hidden = true;
  }

  async refresh() {
    const room = this.room;
    if (!room) return;
    let info;
    let page;
    try {
      info = await this.api.get(`/api/rooms/${encodeURIComponent(room)}`);
      page = await this.api.get(`/api/rooms/${encodeURIComponent(room)}/members?limit=100`);
    } catch {
      // Not a registered room (or no longer ours to see): nothing to manage.
      if (room === this.room) this.elements.panel.hidden = true;
      return;
    }
    if (room !== this.room) return;
    this.info = info;
    const manager = info.role === "owner" || info.role === "admin";
    const dm = info.kind === "dm";
    this.elements.panel.hidden = false;
    this.elements.count.textContent = String(info.member_count);
    this.elements.inviteForm.hidden = !manager || dm;
    this.elements.settings.hidden = !manager || dm;
    this.elements.private.checked = info.visibility === "private";
    this.elements.list.replaceChildren(...page.items.map((member) => this.row(member, info.role, dm)));
  }

  row(member, myRole, dm) {
    const me = String(member.user_id) === String(this.myId());
    const controls = [];
    if (!me) {
      controls.push(
        h("button", { type: "button", class: "small", onclick: () => this.message(member.user_id) }, "Message"),
      );
    }
    if (!dm && myRole === "owner" && !me) {
      const select = h(
        "select",
        { "aria-label": `Role of ${member.display_name}`, onchange: (event) => this.setRole(member.user_id, event.target.value) },
        ...ROLES.map((role) => h("option", { value: role, selected: role === member.role }, role)),
      );
      controls.push(select);
    }
    const removable = !dm && !me && member.role !== "owner" && (myRole === "owner" || (myRole === "admin" && member.role === "member"));
    if (removable) {
      controls.push(
        h("button", { type: "button", class: "small danger", onclick: () => this.remove(member) }, "Remove"),
      );
    }
    return h(
      "li",
      { dataset: { userId: String(member.user_id), role: member.role } },
      this.people.person(member.user_id, member.display_name),
      " ",
      h("span", { class: "badge" }, member.role),
      ...controls,
    );
  }

  message(userId) {
    this.dispatchEvent(new CustomEvent("message", { detail: { userId } }));
  }

  async act(action, done) {
    this.elements.error.textContent = "";
    this.elements.status.textContent = "";
    try {
      await action();
      if (done) this.elements.status.textContent = done;
    } catch (error) {
      this.elements.error.textContent = explain(error);
    }
    await this.refresh();
  }

  invite() {
    const email = this.elements.inviteEmail.value.trim();
    if (!email) return;
    return this.act(async () => {
      await this.api.post(`/api/rooms/${encodeURIComponent(this.room)}/invitations`, { email });
      this.elements.inviteEmail.value = "";
    }, `Invitation sent to ${email}.`);
  }

  setRole(userId, role) {
    return this.act(
      () => this.api.patch(`/api/rooms/${encodeURIComponent(this.room)}/members/${userId}`, { role }),
      "Role changed.",
    );
  }

  remove(member) {
    return this.act(
      () => this.api.delete(`/api/rooms/${encodeURIComponent(this.room)}/members/${member.user_id}`),
      `${member.display_name} was removed.`,
    );
  }

  setPrivate(isPrivate) {
    return this.act(
      () => this.api.patch(`/api/rooms/${encodeURIComponent(this.room)}`, { visibility: isPrivate ? "private" : "public" }),
      isPrivate ? "Only members may enter now." : "Anyone may enter now.",
    );
  }
}
