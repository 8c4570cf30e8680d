// Server-Sent Events parsing (the WHATWG event-stream format), fed text chunks as they
// arrive. EventSource would hide comments (our heartbeats) and the status of a refused
// request, so the client reads the stream with fetch and parses it here.

export class SSEParser {
  /**
   * @param {{
   *   onEvent: (event: {type: string, data: string, id: string}) => void,
   *   onComment?: (text: string) => void,
   *   onRetry?: (ms: number) => void,
   * }} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.buffer = "";
    this.type = "";
    this.data = [];
    this.lastEventId = "";
  }

  /** Feed a decoded chunk; complete lines are processed, a partial one waits. */
  push(chunk) {
    this.buffer += chunk;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end;
      let next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of CRLF: wait for the next chunk.
        if (cr === this.buffer.length - 1) break;
        end = cr;
        next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buffer.slice(start, end));
      start = next;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line[0] === ":") {
      this.handlers.onComment?.(line.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.handlers.onRetry?.(Number(value));
  }

  dispatch() {
    const type = this.type || "message";
    const data = this.data.join("\n");
    const hadData = this.data.length > 0;
    this.type = "";
    this.data = [];
    if (hadData) this.handlers.onEvent({ type, data, id: this.lastEventId });
  }
}

/**
 * The raw text of a top-level number field of a JSON object, e.g. "189.230000" for
 * `price`: JSON.parse would turn it into 189.23 and lose the digits the publisher sent.
 * Walks the object's top level only, so a "price" inside a string or a nested object
 * is never taken for it.
 */
export function rawNumberField(json, key) {
  let depth = 0;
  let i = 0;
  let expectKey = false;
  let lastString = null;
  while (i < json.length) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (j < json.length && json[j] !== '"') j += json[j] === "\\" ? 2 : 1;
      const text = json.slice(i + 1, j);
      lastString = depth === 1 && expectKey ? text : null;
      expectKey = false;
      i = j + 1;
      continue;
    }
    if (c === "{" || c === "[") {
      depth += 1;
      expectKey = c === "{" && depth === 1;
    } else if (c === "}" || c === "]") {
      depth -= 1;
    } else if (c === ",") {
      expectKey = depth === 1;
    } else if (c === ":" && depth === 1 && lastString === key) {
      const match = /^\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(json.slice(i + 1));
      return match ? match[1] : null;
    }
    if (c !== " " && c !== "\t" && c !== "\n" && c !== "\r" && c !== ":") lastString = null;
    i += 1;
  }
  return null;
}
