// Chorus in the browser: sign in, then rooms, notifications, orders, the playground and keys.
//
// The access token lives in memory and in sessionStorage (this tab only, gone when it
// closes); it is sent in Authorization headers and the WebSocket subprotocol, never in
// a URL. window.chorus exposes a few hooks to watch and shake the live connection.

import { Api, ApiError, explain } from "./api.js";
import { ChatView } from "./chat.js";
import { byId } from "./dom.js";
import { KeysView } from "./keys.js";
import { MembersPanel } from "./members.js";
import { NotificationsView } from "./notifications.js";
import { OrdersView } from "./orders.js";
import { People } from "./people.js";
import { PlaygroundView } from "./playground.js";
import { RoomsNav } from "./rooms.js";

const TOKEN_KEY = "chorus.token";

const session = { token: sessionStorage.getItem(TOKEN_KEY), user: null };
const api = new Api(() => session.token);
const myId = () => session.user && session.user.id;
const people = new People(api, myId);
const members = new MembersPanel(api, people, myId);
const rooms = new RoomsNav(api, people);
const chat = new ChatView(api, () => ({ id: myId(), token: session.token }), people, members);
const notifications = new NotificationsView();
const orders = new OrdersView(api);
new PlaygroundView(api);
const keys = new KeysView(api);

rooms.addEventListener("open", (event) => chat.join(event.detail.room, event.detail));
chat.addEventListener("joined", (event) => {
  rooms.current = event.detail.room;
});
chat.addEventListener("ended", (event) => rooms.forget(event.detail.room));
chat.isMember = (room) => rooms.isMember(room);
members.addEventListener("message", (event) => {
  rooms.startDm(event.detail.userId).catch((error) => chat.notice(explain(error), "error"));
});
notifications.addEventListener("notification", (event) => {
  const { type, data } = event.detail;
  if (type.startsWith("order.")) orders.refresh().catch(() => {});
  if (type === "dm.message") rooms.onDirectMessage(data);
  if (type === "room.invited") rooms.loadInvitations().catch(() => {});
});
api.onUnauthorized = () => signOut("Your session ended: please log in again.");

async function signIn(token) {
  session.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  session.user = await api.get("/api/users/me");
  byId("whoami-name").textContent = session.user.full_name || session.user.email;
  byId("whoami").hidden = false;
  byId("auth").hidden = true;
  byId("app").hidden = false;
  byId("auth-error").textContent = "";
  byId("room-name").focus();
  await notifications.start(token);
  const [dashboard] = await Promise.all([orders.refresh(), rooms.refresh()]);
  notifications.addStored(dashboard.notifications);
  await keys.refresh();
}

function signOut(message = "") {
  chat.leave();
  notifications.stop();
  keys.clear();
  session.token = null;
  session.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
  byId("whoami").hidden = true;
  byId("app").hidden = true;
  byId("room").hidden = true;
  byId("auth").hidden = false;
  byId("auth-error").textContent = message;
  byId("login-email").focus();
}

async function logIn(email, password) {
  const body = await api.request("POST", "/api/auth/token", {
    form: { username: email, password, grant_type: "password" },
  });
  await signIn(body.access_token);
}

byId("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    await logIn(String(form.get("email")), String(form.get("password")));
  } catch (error) {
    byId("auth-error").textContent = explain(error);
  }
});

byId("signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const email = String(form.get("email"));
  const password = String(form.get("password"));
  try {
    await api.post("/api/auth/register", { email, password, full_name: String(form.get("full_name")) });
  } catch (error) {
    byId("auth-error").textContent = explain(error);
    return;
  }
  try {
    await logIn(email, password);
  } catch (error) {
    // Registering an address that already has an account answers like a new one (so it
    // reveals nothing); its owner gets an e-mail, and this password does not log in.
    byId("auth-error").textContent =
      error instanceof ApiError && error.status === 401
        ? "This password does not open an account for this address. If the address already had one, we e-mailed its owner."
        : explain(error);
  }
});

byId("logout").addEventListener("click", () => signOut());

if (session.token) {
  signIn(session.token).catch((error) => {
    signOut(error instanceof ApiError && error.status === 401 ? "Please log in again." : explain(error));
  });
}

window.chorus = {
  /** Drop the room's WebSocket as a network failure would; {hold: true} stays offline. */
  dropSocket: (options) => chat.connection && chat.connection.drop(options),
  /** Reconnect after dropSocket({hold: true}). */
  releaseSocket: () => chat.connection && chat.connection.release(),
  /** How many times the room's socket has been subscribed (1 + reconnections). */
  connections: () => (chat.connection ? chat.connection.connections : 0),
  /** The stream ids of the room's messages on screen, in order. */
  messageIds: () => [...document.querySelectorAll("#messages .msg[data-id]")].map((li) => li.dataset.id),
};
