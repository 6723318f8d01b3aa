// Server-Sent Events over fetch(). EventSource cannot send an Authorization header, and a
// token in the query string ends up in access logs: reading the stream ourselves keeps the
// token in a header and lets us resume with a Last-Event-ID header of our choosing.

/**
 * Parse a text/event-stream body into events {event, data, id} as the WHATWG spec does
 * (fields, comments, multi-line data, CR / LF / CRLF line ends split across chunks).
 * @param {ReadableStream<Uint8Array>} body
 */
export async function* parseEventStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  let event = "";
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
      const heldCR = buffer.endsWith("\r");
      const lines = (heldCR ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
      buffer = lines.pop() + (heldCR ? "\r" : "");
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id };
          data = [];
          event = "";
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let text = colon === -1 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") event = text;
        else if (field === "id" && !text.includes("\0")) id = text;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
