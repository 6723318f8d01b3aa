// Preloaded into Portkey's gateway (`node --import`) for its streamed figures: keeps Node's own
// Request and Response. @hono/node-server replaces them with lightweight classes, and its
// Response, given a fetch Response as init, keeps that response's headers, which fetch made
// immutable; Portkey then appends its own headers to a streamed response and fails with
// "TypeError: immutable" on Node 20. Portkey's code is unchanged.
const defineProperty = Object.defineProperty;
Object.defineProperty = function (target, key, descriptor) {
  if (target === globalThis && (key === "Request" || key === "Response")) {
    return target;
  }
  return defineProperty(target, key, descriptor);
};
