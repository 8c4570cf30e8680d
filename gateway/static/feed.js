// One SSE connection to the gateway's /stocks: resumes by the last event id, drops
// duplicates by id, reconnects with backoff and jitter (honouring Retry-After), and
// reports its state. Read with fetch rather than EventSource: EventSource gives up for
// good on a 503, hides the status and Retry-After, and never shows heartbeat comments.

import { SSEParser, rawNumberField } from "./sse.js";

const DEFAULT_RETRY_MS = 2000; // until the gateway's `retry:` line says otherwise
const MAX_DELAY_MS = 30000;
// The gateway sends a comment at least every 15 s by default; three missed means the
// connection is dead even if TCP has not noticed (a sleeping laptop, a dropped NAT entry).
const STALL_MS = 45000;
const ENDED = /^stream ended: (.*?)(?:; reconnect to resume)?$/;
const TOKEN_EXPIRED = "token expired";
// Refused for who we are (401, 403): asking again soon gets the same answer, so retries
// start slower and only a new token, a renewal or new symbols can change it.
const REFUSED_RETRY_MS = 5000;
// A 400 about the delivery asked for names the parameter first ("conflate=10 is out of
// range: ..."): not the symbols' number, not the position.
const DELIVERY_PROBLEM = /^(conflate|delay)\b/;

/** Ids seen recently, bounded so a page left open all day does not grow. */
export class SeenIds {
  constructor(limit = 10000) {
    this.limit = limit;
    this.ids = new Set();
  }

  /** True the first time `id` is offered. */
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value);
    return true;
  }
}

/** The tick of a `stockUpdate` event, with the price as the exact text the publisher sent. */
export function parseTick(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return null;
  }
  if (data === null || typeof data !== "object" || typeof data.symbol !== "string") return null;
  const price = rawNumberField(event.data, "price") ?? String(data.price);
  return {
    id: event.id || String(data.id),
    symbol: data.symbol,
    price,
    timestamp: data.timestamp,
    source: data.source,
    data,
  };
}

/** The delivery a stream's answer says applies, {conflate (ms), delay (s)}: from its
 * Price-Conflate and Price-Delay headers. A gateway that sends neither has no delivery
 * control: every tick at once if that is what was asked, else null (unknown). */
function effectiveDelivery(headers, asked) {
  const conflate = headers.get("Price-Conflate");
  const delay = headers.get("Price-Delay");
  if (conflate === null && delay === null) {
    return asked.conflate || asked.delay ? null : { conflate: 0, delay: 0 };
  }
  const number = (text) => (text !== null && /^\d+$/.test(text.trim()) ? Number(text) : 0);
  return { conflate: number(conflate), delay: number(delay) };
}

function retryAfterMs(header) {
  if (!header) return null;
  if (/^\d+$/.test(header.trim())) return Number(header) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

class Stopped extends Error {}

export class PriceFeed {
  /**
   * @param {{
   *   baseUrl: string | URL,
   *   onTick: (tick: object) => void,
   *   onState: (state: object) => void,
   *   maxSymbols?: number,
   *   stallMs?: number,
   *   maxDelayMs?: number,
   *   credentials?: RequestCredentials,
   *   conflate?: number,
   *   delay?: number,
   *   auth?: {
   *     token?: () => Promise<string | null>,
   *     renew?: () => Promise<boolean | null>,
   *   },
   * }} options
   */
  constructor(options) {
    this.baseUrl = new URL(options.baseUrl);
    this.onTick = options.onTick;
    this.onState = options.onState;
    this.maxSymbols = options.maxSymbols ?? 100;
    this.stallMs = options.stallMs ?? STALL_MS;
    this.maxDelayMs = options.maxDelayMs ?? MAX_DELAY_MS;
    this.credentials = options.credentials ?? "same-origin";
    this.conflate = options.conflate ?? 0; // ms: at most one event per symbol per interval
    this.delay = options.delay ?? 0; // s: ticks this long after the gateway stored them
    // What the gateway applies (a token may impose more than asked), from the stream's
    // Price-Conflate and Price-Delay answer headers; null until a stream opens.
    this.delivery = null;
    this.auth = options.auth ?? {};
    this.refusal = null; // {state: "unauthorized" | "forbidden", detail} until a stream opens
    this.refusals = 0;
    this.renewed = false; // the last refusal was followed by a renewal
    this.retryMs = DEFAULT_RETRY_MS;
    this.attempts = 0;
    this.lastEventId = "";
    this.seen = new SeenIds();
    this.symbols = undefined; // undefined: stopped; null: every symbol; else sorted symbols
    this.opened = false; // a stream has been open before: later attempts are reconnects
    this.current = { state: "connecting", lastEventId: "" };
    this.controller = null;
    this.wake = null;
    this.running = null;
  }

  /** Stream `symbols` (sorted array, or null for every symbol); one new stream per change. */
  setSymbols(symbols) {
    const key = symbols === null ? "*" : symbols.join(",");
    if (key === this.key && this.running) return;
    this.key = key;
    this.symbols = symbols;
    this.restart("symbols changed");
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
  }

  /** Stop streaming; the position is kept, so a later setSymbols resumes after it. */
  stop() {
    this.symbols = undefined;
    this.key = undefined;
    this.restart("stopped");
  }

  /** Forget the position and the ids seen: the next stream starts from the latest prices. */
  forget() {
    this.lastEventId = "";
    this.seen = new SeenIds();
    this.opened = false;
  }

  /** Start after `id` (seen on another stream of the same prices), if this feed has no
   * position of its own: its first stream resumes there, with no gap and no repeat. */
  resumeAfter(id) {
    if (!id || this.lastEventId || this.opened) return;
    this.lastEventId = id;
  }

  restart(why) {
    this.controller?.abort(new Stopped(why));
    this.wake?.();
  }

  setState(state) {
    this.current = { ...state, lastEventId: this.lastEventId, delivery: this.delivery };
    this.onState(this.current);
  }

  url() {
    const url = new URL("stocks", this.baseUrl);
    const parts = [];
    // Past the gateway's per-request limit, ask for everything and let the hub filter.
    if (this.symbols && this.symbols.length <= this.maxSymbols) {
      // Symbols are [A-Z0-9.-]: safe in a query as they are, commas kept readable.
      parts.push(`symbols=${this.symbols.join(",")}`);
    }
    if (this.conflate) parts.push(`conflate=${this.conflate}`);
    if (this.delay) parts.push(`delay=${this.delay}`);
    if (this.lastEventId) parts.push(`lastEventId=${encodeURIComponent(this.lastEventId)}`);
    url.search = parts.join("&");
    return url;
  }

  async run() {
    let why = "";
    while (this.symbols !== undefined) {
      // A refusal stays on show while we retry: "reconnecting" would hide why.
      const attempt = { state: this.opened ? "reconnecting" : "connecting", reason: why };
      this.setState(this.refusal ?? attempt);
      const controller = new AbortController();
      this.controller = controller;
      let delay;
      try {
        delay = await this.stream(controller.signal);
        why = this.ended;
      } catch {
        why = controller.signal.reason?.message ?? "connection lost";
        delay = controller.signal.reason instanceof Stopped ? 0 : this.backoff();
      } finally {
        this.controller = null;
      }
      if (controller.signal.reason instanceof Stopped) {
        this.refusal = null; // it was about the old symbols
        continue; // new symbols: at once
      }
      if (this.symbols === undefined) break;
      if (delay === Infinity) {
        await this.sleep(delay); // refused for good: until the symbols change
      } else if (delay > 0) {
        const state = this.refusal ?? { state: "reconnecting", reason: why };
        this.setState({ ...state, retryAt: Date.now() + delay });
        await this.sleep(delay);
      }
    }
    this.setState({ state: "closed" });
  }

  backoff() {
    this.attempts += 1;
    const ceiling = Math.min(this.maxDelayMs, this.retryMs * 2 ** (this.attempts - 1));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  refusedBackoff() {
    this.refusals += 1;
    const base = Math.max(this.retryMs, REFUSED_RETRY_MS);
    const ceiling = Math.min(this.maxDelayMs, base * 2 ** (this.refusals - 1));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : null;
      this.wake = done;
    });
  }

  /** One request; resolves with the delay before the next, rejects on a network error. */
  async stream(signal) {
    this.ended = "";
    const silence = new Error(`nothing heard for ${this.stallMs / 1000} s`);
    let stall = null;
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => this.controller?.abort(silence), this.stallMs);
    };
    try {
      arm();
      const response = await fetch(this.url(), {
        signal,
        cache: "no-store",
        credentials: this.credentials,
        headers: await this.headers(),
      });
      if (response.status !== 200) return await this.refused(response);
      this.opened = true;
      this.attempts = 0;
      this.refusal = null;
      this.refusals = 0;
      this.renewed = false;
      const asked = { conflate: this.conflate, delay: this.delay };
      this.delivery = effectiveDelivery(response.headers, asked);
      this.heardAt = Date.now();
      this.setState({ state: "live", heardAt: this.heardAt });
      const parser = new SSEParser({
        onEvent: (event) => this.event(event),
        onComment: (text) => this.comment(text),
        onRetry: (ms) => {
          this.retryMs = Math.max(100, ms);
        },
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        // Bytes already read when the symbols changed belong to the old stream: the new
        // one resumes after the last id handled here, so handling them would double them.
        if (signal.aborted) throw signal.reason;
        this.heardAt = Date.now();
        arm();
        parser.push(value);
      }
    } finally {
      clearTimeout(stall);
    }
    if (signal.aborted) throw signal.reason;
    if (!this.ended) throw new Error("stream closed without a reason");
    if (this.ended === TOKEN_EXPIRED) return await this.afterExpiry();
    // A clean end (the gateway draining or losing its consumer): come back soon, but
    // spread over the retry period so a drained replica's clients do not return at once.
    return Math.random() * this.retryMs;
  }

  /** Request headers: a Bearer token when the page supplies one (never in the URL). */
  async headers() {
    const headers = { Accept: "text/event-stream" };
    const token = await this.ask("token");
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  /** Call an auth hook of the page; null when there is none, or it failed. */
  async ask(hook) {
    if (!this.auth[hook]) return null;
    try {
      return (await this.auth[hook]()) ?? null;
    } catch {
      return null;
    }
  }

  /** The token ran out mid-stream: renew it (if the page can), then resume at once. */
  async afterExpiry() {
    this.setState({ state: "reconnecting", reason: this.ended });
    this.renewed = (await this.ask("renew")) === true;
    // Expiries are per user, not a herd like a drained replica's: no spreading needed.
    return 0;
  }

  /** 401: renew and retry at once, unless a renewal just failed to help; then wait. */
  async unauthorized(detail) {
    if (!this.renewed && (await this.ask("renew")) === true) {
      this.renewed = true;
      return 0;
    }
    this.renewed = false; // the next refusal may try renewing again (a new sign-in)
    this.refusal = { state: "unauthorized", detail };
    return this.refusedBackoff();
  }

  async refused(response) {
    let detail = `HTTP ${response.status}`;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch {
      // not problem details: the status says enough
    }
    if (response.status === 401) return await this.unauthorized(detail);
    if (response.status === 403) {
      // The token does not allow a symbol (the detail names it): new symbols or a new
      // token can change that, so retry, slowly.
      this.refusal = { state: "forbidden", detail };
      return this.refusedBackoff();
    }
    if (response.status === 400 && DELIVERY_PROBLEM.test(detail)) {
      this.setState({ state: "error", detail });
      return Infinity; // a conflate or delay this gateway refuses: asking again will not help
    }
    if (response.status === 400) {
      const asked = this.symbols && this.symbols.length <= this.maxSymbols;
      if (asked && this.symbols.length > 1) {
        // Symbols are checked before they get here, so the gateway's objection is their
        // number (its --max-symbols is lower): stream everything and filter on our side.
        this.maxSymbols = this.symbols.length - 1;
        return 0;
      }
      if (this.lastEventId) {
        // The gateway refuses our position (say, a stream restored from an older backup):
        // start from the latest prices, and say so as the gateway does for a lost one.
        this.lastEventId = "";
        this.setState({ state: "reset", reason: "id-refused", detail });
        return 0;
      }
      this.setState({ state: "error", detail });
      return Infinity; // the same request would be refused again: wait for new symbols
    }
    this.ended = detail;
    const wait = retryAfterMs(response.headers.get("Retry-After"));
    if (wait === null) return this.backoff();
    this.attempts += 1;
    return wait + Math.random() * this.retryMs;
  }

  event(event) {
    if (event.type === "stockUpdate") {
      const tick = parseTick(event);
      if (tick === null || !this.seen.add(tick.id)) return;
      this.lastEventId = tick.id;
      if (this.current.state !== "live") this.setState({ state: "live", heardAt: this.heardAt });
      this.onTick(tick);
    } else if (event.type === "reset") {
      let body = {};
      try {
        body = JSON.parse(event.data);
      } catch {
        // a reset without a readable reason is still a reset
      }
      this.setState({
        state: "reset",
        reason: String(body.reason ?? "reset"),
        detail: String(body.detail ?? ""),
      });
    }
  }

  comment(text) {
    const ended = ENDED.exec(text);
    if (ended) {
      this.ended = ended[1];
    } else if (this.current.state === "live" || this.current.state === "reset") {
      this.setState({ state: "live", heardAt: this.heardAt }); // a heartbeat
    }
  }
}
