// Preloaded into Portkey's gateway (`node --import`): its server listens on every interface,
// and a benchmark's traffic stays on loopback. A listen() without a host gets 127.0.0.1.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number") {
    const callback = args.find((arg) => typeof arg === "function");
    return listen.call(this, args[0], "127.0.0.1", ...(callback ? [callback] : []));
  }
  if (args[0] && typeof args[0] === "object" && !args[0].host && !args[0].path) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
